"""The codebase's layout: thin rule scripts over one library package whose stages import only downwards."""

import ast
import re
import sys
from pathlib import Path

import pytest

from helpers import REPO

SCRIPTS = REPO / "scripts"
PACKAGE = SCRIPTS / "saliency_audit"
RULE_FILES = sorted((REPO / "workflow/rules").glob("*.smk"))
RULE_SCRIPTS = sorted(SCRIPTS.glob("*.py"))
# Each stage may import its own and the lower ones; demo and config sit beside them (any stage but report).
STAGES = ["runtime", "data", "model", "audit", "saliency", "report"]
BESIDE = {"demo": set(STAGES) - {"report"}, "config": set(STAGES) - {"report"}}
COMPUTE_FREE_OF = {"matplotlib"}  # figures live under report/


def imports(path: Path) -> list[str]:
    """Every module a file imports, dotted, wherever the import statement sits."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def stage_of(path: Path) -> str:
    """The package stage a module belongs to: its sub-package, or the top-level module's name."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def test_scripts_holds_the_package_and_one_adapter_per_rule() -> None:
    scripted = {name for f in RULE_FILES for name in re.findall(r'"\.\./\.\./scripts/(\w+\.py)"', f.read_text())}
    assert scripted == {p.name for p in RULE_SCRIPTS}, "every file beside the package is a rule's script"
    assert sorted(p.name for p in SCRIPTS.iterdir() if p.is_dir() and p.name != "__pycache__") == ["saliency_audit"]


@pytest.mark.parametrize("script", RULE_SCRIPTS, ids=lambda p: p.stem)
def test_every_rule_script_is_a_thin_adapter(script: Path) -> None:
    lines = script.read_text().splitlines()
    assert len(lines) <= 60, f"{script.name} has {len(lines)} lines: its logic belongs in saliency_audit"
    tree = ast.parse(script.read_text())
    functions = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert functions == ["main"], f"{script.name} defines {functions}: only main(snakemake) belongs here"
    siblings = {p.stem for p in RULE_SCRIPTS}
    for name in imports(script):
        top = name.split(".")[0]
        assert top not in siblings, f"{script.name} imports the rule script {top}"
        allowed = top == "saliency_audit" or top in sys.stdlib_module_names
        assert allowed, f"{script.name} imports {name}: an adapter uses only saliency_audit and the standard library"
    assert any(name.startswith("saliency_audit") for name in imports(script))


@pytest.mark.parametrize("module", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_the_package_imports_only_downwards(module: Path) -> None:
    stage = stage_of(module)
    if stage in BESIDE:
        allowed = BESIDE[stage] | {stage}
    else:
        assert stage in STAGES or stage == "__init__", f"{stage} is not a stage of the package"
        allowed = set(STAGES[: STAGES.index(stage) + 1]) if stage in STAGES else set()
    siblings = {p.stem for p in RULE_SCRIPTS}
    for name in imports(module):
        top, *rest = name.split(".")
        assert top not in siblings, f"{module.name} imports the rule script {top}"
        if top == "saliency_audit" and rest:
            assert rest[0] in allowed, f"{stage}/{module.name} imports {name}, a stage above or beside it"
        if stage != "report":
            assert top not in COMPUTE_FREE_OF, f"{module.name} imports {top}: figures belong in report/"


def test_the_package_is_the_one_on_the_path() -> None:
    import saliency_audit

    assert Path(saliency_audit.__file__).resolve() == PACKAGE / "__init__.py"
