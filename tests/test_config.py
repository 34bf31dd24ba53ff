import copy
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from config_checks import ConfigError, check_config, coerce_cli_strings, resolve_results

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
DEMO = yaml.safe_load((REPO / "config/config.yaml").read_text())


@pytest.mark.parametrize("path", sorted((REPO / "config").glob("**/*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path) -> None:
    config = copy.deepcopy(DEMO)
    override = yaml.safe_load(path.read_text())
    if path.name == "sdss.yaml":
        config = override  # used with --replace-workflow-config
    else:
        for key, value in override.items():
            config[key] = {**config[key], **value} if isinstance(value, dict) else value
    Draft202012Validator(SCHEMA).validate(config)


def test_every_schema_key_is_documented() -> None:
    readme = (REPO / "config/README.md").read_text()

    def keys(node: dict, prefix: str = ""):
        for name, sub in node.get("properties", {}).items():
            yield prefix + name
            yield from keys(sub, prefix + name + ".")

    missing = [k for k in keys(SCHEMA) if f"`{k}`" not in readme]
    assert not missing, f"undocumented config keys: {missing}"


def test_cli_strings_become_numbers_only_where_the_schema_wants_them() -> None:
    config = {"image": {"size": "96"}, "id_column": "123", "pca": {"whiten": "false"}, "target": {"bins": ["8", "9.5"]}}
    out = coerce_cli_strings(config, SCHEMA, SCHEMA)
    assert out == {"image": {"size": 96}, "id_column": "123", "pca": {"whiten": False}, "target": {"bins": [8, 9.5]}}
    assert coerce_cli_strings({"model": {"stride": "2"}}, SCHEMA, SCHEMA) == {"model": {"stride": 2}}


def test_results_placeholder_moves_the_demo_with_the_results() -> None:
    config = copy.deepcopy(DEMO)
    config["results"] = "/scratch/run1/"
    resolve_results(config)
    assert config["catalog"] == "/scratch/run1/demo/catalog.csv"
    assert config["images"] == "/scratch/run1/demo/images/{id}.jpg"
    assert config["saliency"]["object"]["masks"] == "/scratch/run1/demo/masks/{id}.png"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"bins": [1, 2, 2], "labels": ["a", "b"]}, "target.bins must increase strictly"),
        ({"bins": [1, 2, 3], "labels": ["a", "b", "c"]}, "2 bins from target.bins"),
        ({"bins": [1, 2, 3], "labels": ["a", "b"], "keep": ["a", "z"]}, "target.keep names ['z']"),
    ],
)
def test_cross_field_checks_name_the_key(target: dict, message: str) -> None:
    config = copy.deepcopy(DEMO)
    config["target"] = {"column": "Z", **target}
    config["demo"]["shortcut"] = {"kind": "none"}
    with pytest.raises(ConfigError) as error:
        check_config(config)
    assert message in str(error.value)


def test_compiled_audit_needs_the_default_layer() -> None:
    config = copy.deepcopy(DEMO)
    config["audit"] = {**config["audit"], "compile": True}
    check_config(config)
    config["audit"]["layer"] = "body.1"
    with pytest.raises(ConfigError, match="audit.compile works only with audit.layer: auto .* not 'body.1'"):
        check_config(config)


def test_shortcut_class_must_be_a_label() -> None:
    config = copy.deepcopy(DEMO)
    config["demo"]["shortcut"]["class"] = "highest"
    with pytest.raises(ConfigError, match="demo.shortcut.class 'highest'"):
        check_config(config)
    check_config(DEMO)
