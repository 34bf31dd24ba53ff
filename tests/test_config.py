import copy
import re
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config, validate

from saliency_audit.config import (
    ConfigError,
    apply_demo,
    check_catalog,
    check_config,
    check_layer,
    check_model,
    check_paths,
    coerce_cli_strings,
    is_demo,
    prepare_config,
    resolve_results,
    with_defaults,
)
from saliency_audit.data.catalog_csv import DELIMITERS
from saliency_audit.data.image_io import Decoding
from saliency_audit.data.regions import METHODS
from saliency_audit.model.architectures import ARCHS, TORCHVISION
from saliency_audit.model.training import OPTIMIZERS
from saliency_audit.saliency.interventions import FILLS
from saliency_audit.saliency.strategies import FEATURES

REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO / "workflow/schemas/config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
DEMO = yaml.safe_load((REPO / "config/config.yaml").read_text())
ON_TOP_OF = re.compile(r"^#.*\bon top of (\S+\.yaml)", re.M)


def schema_validate(config: dict) -> None:
    validate(config, str(SCHEMA_PATH))  # Snakemake's own, with the schema's defaults filled in


def run_checks(override: dict, base: dict | None = None) -> dict:
    """``override`` on top of ``base`` (the demo's config) as ``--configfile`` merges it, checked as a run checks it."""
    config = copy.deepcopy(DEMO if base is None else base)
    update_config(config, copy.deepcopy(override))
    prepare_config(config, SCHEMA, schema_validate)
    return config


def documented_configs() -> list[tuple[str, str]]:
    """Every config a user may copy: config/config.yaml, config/examples/, and each YAML block of the READMEs."""
    found = [(str(path.relative_to(REPO)), path.read_text()) for path in sorted((REPO / "config").glob("**/*.yaml"))]
    for readme in ("README.md", "config/README.md"):
        blocks = re.findall(r"^ *```yaml\n(.*?)^ *```", (REPO / readme).read_text(), re.M | re.S)
        found += [(f"{readme} block {i + 1}", block) for i, block in enumerate(blocks)]
    return found


@pytest.mark.parametrize(("name", "text"), documented_configs(), ids=[name for name, _ in documented_configs()])
def test_documented_configs_pass_every_check_of_a_run(name: str, text: str) -> None:
    """Each is added with --configfile on top of config/config.yaml, as the README says, unless its comment says
    it is used with --replace-workflow-config or on top of another file (a block that is deliberately partial)."""
    base = DEMO
    if "--replace-workflow-config" in text:
        base = {}
    elif match := ON_TOP_OF.search(text):
        base = run_checks(yaml.safe_load((REPO / match.group(1)).read_text()), {})
    config = run_checks(yaml.safe_load(text), base)
    assert config["target"]["column"] and config["saliency"]["object"]["method"]


def test_the_readmes_show_an_own_catalog_and_the_million_image_resources() -> None:
    names = [name for name, text in documented_configs() if "catalog:" in text and "README" in name]
    assert names, "the README's own-data recipe has a config block"
    assert any("gather_images" in text for _, text in documented_configs())


def test_demo_settings_stay_with_the_demo() -> None:
    demo = run_checks({})
    assert is_demo(demo) and demo["target"]["keep"] == ["low", "high"]
    assert demo["saliency"]["object"]["method"] == "masks" and demo["saliency"]["truth_column"] == "shortcut"
    # the four lines of an own catalog, added with a plain --configfile: nothing of the demo's leaks in
    own = {"results": "/data/run1", "catalog": "/data/cat.csv", "id_column": "objID", "images": "/data/img/{id}.jpg",
           "target": {"column": "Z", "bins": [8.1, 8.9, 9.3], "labels": ["a", "b"]}}  # fmt: skip
    config = run_checks(own)
    assert not is_demo(config) and config["target"] == {
        **own["target"],
        "invalid": [],
        "task": "classification",
        "loss": "mse",
    }
    assert config["saliency"]["object"]["method"] == "threshold" and config["saliency"]["truth_column"] is None
    # a categorical target inherits no bins; on the demo, target keys replace demo.target's
    assert run_checks({**own, "target": {"column": "species"}})["target"] == {
        "column": "species",
        "invalid": [],
        "task": "classification",
        "loss": "mse",
    }
    assert run_checks({"target": {"keep": ["low", "medium", "high"]}})["target"]["bins"] == [8.1, 8.7, 9.1, 9.3]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"catalog": "/data/cat.csv", "target": {"column": "Z"}}, "config key images: your catalog '/data/cat.csv'"),
        ({"catalog": "/data/cat.csv", "images": "/d/{id}.png"}, "'target' is a required property"),
        ({"demo": {"shortcut": {"class": "top"}}}, "demo.shortcut.class 'top' is not one of target.labels"),
    ],
)
def test_an_own_catalog_names_what_the_demo_would_have_set(override: dict, message: str) -> None:
    with pytest.raises(Exception, match=re.escape(message)):
        run_checks(override)


def test_an_own_catalog_ignores_the_demo_shortcut() -> None:
    own = {"catalog": "/data/cat.csv", "images": "/d/{id}.png", "target": {"column": "species"}}
    run_checks({**own, "demo": {"shortcut": {"kind": "star", "class": "top", "fraction": 0.5}}})


def schema_keys(node: dict, prefix: str = ""):
    """(dotted key, its schema) for every key of the schema, the target's once under each of its places."""
    if prefix in ("target.", "demo.target."):
        node = SCHEMA["$defs"]["target"]
    for name, sub in node.get("properties", {}).items():
        yield prefix + name, sub
        yield from schema_keys(sub, prefix + name + ".")


def test_config_readme_gives_every_default_as_the_schema_does() -> None:
    """A default cell that starts with a literal (`5`, `[low, high]`, `{method: threshold}`) is the schema's."""
    cells = dict(re.findall(r"^\| `([\w.]+)` \| (.*?) \|", (REPO / "config/README.md").read_text(), re.M))
    checked = 0
    for key, sub in schema_keys(SCHEMA):
        if "default" not in sub or sub["default"] == {} or key.startswith("demo.target."):
            continue  # a section's {} only lets its keys' defaults apply
        literal = re.match(r"`([^`]*)`", cells[key])
        assert literal, f"config/README.md gives no default for {key} (the schema's is {sub['default']!r})"
        assert yaml.safe_load(literal.group(1)) == sub["default"], f"{key}: {cells[key]} vs {sub['default']!r}"
        checked += 1
    assert checked > 40


def test_every_enum_the_code_knows_is_the_schema_s() -> None:
    enums = {key: sub["enum"] for key, sub in schema_keys(SCHEMA) if "enum" in sub}
    arch = re.compile(next(sub["pattern"] for key, sub in schema_keys(SCHEMA) if key == "model.arch"))
    assert all(arch.match(name) for name in ARCHS) and arch.match(TORCHVISION + "convnext_tiny")
    assert list(OPTIMIZERS) == enums["train.optimizer"]
    assert list(METHODS) == enums["saliency.object.method"]
    assert list(FILLS) == enums["saliency.probes.fill"]
    assert list(FEATURES) == enums["saliency.clusters.features"]
    assert [*DELIMITERS, None] == enums["catalog_delimiter"]


def test_defaults_come_from_the_schema_even_without_validation() -> None:
    """A module host with skip_validation gets no defaults from Snakemake; with_defaults gives the same ones."""
    for override in ({}, {"catalog": "/d/c.csv", "images": "/d/{id}.png", "target": {"column": "Z"}}):
        ours = copy.deepcopy(DEMO)
        update_config(ours, copy.deepcopy(override))
        apply_demo(ours, SCHEMA)
        snakemakes = copy.deepcopy(ours)
        schema_validate(snakemakes)
        assert with_defaults(ours, SCHEMA) == snakemakes


def test_every_schema_key_is_documented() -> None:
    readme = (REPO / "config/README.md").read_text()
    # the target's keys are one definition, documented once as target.*
    missing = [k for k, _ in schema_keys(SCHEMA) if f"`{k}`" not in readme and not k.startswith("demo.target.")]
    assert not missing, f"undocumented config keys: {missing}"


def test_cli_strings_become_numbers_only_where_the_schema_wants_them() -> None:
    config = {"image": {"size": "96"}, "id_column": "123", "pca": {"whiten": "false"}, "target": {"bins": ["8", "9.5"]}}
    out = coerce_cli_strings(config, SCHEMA, SCHEMA)
    assert out == {"image": {"size": 96}, "id_column": "123", "pca": {"whiten": False}, "target": {"bins": [8, 9.5]}}
    assert coerce_cli_strings({"model": {"stride": "2"}}, SCHEMA, SCHEMA) == {"model": {"stride": 2}}


def test_results_placeholder_moves_the_demo_with_the_results() -> None:
    config = apply_demo({**copy.deepcopy(DEMO), "results": "/scratch/run1/"}, SCHEMA)
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
    config = resolved()
    config["target"] = {"column": "Z", **target}
    config["demo"]["shortcut"] = {"kind": "none"}
    with pytest.raises(ConfigError) as error:
        check_config(config)
    assert message in str(error.value)


def test_compiled_audit_needs_the_default_layer() -> None:
    config = resolved()
    config["audit"] = {**config["audit"], "compile": True}
    check_config(config)
    config["audit"]["layer"] = "body.1"
    with pytest.raises(ConfigError, match="audit.compile works only with audit.layer: auto .* not 'body.1'"):
        check_config(config)


def test_shortcut_class_must_be_a_label() -> None:
    config = resolved()
    config["demo"]["shortcut"]["class"] = "highest"
    with pytest.raises(ConfigError, match="demo.shortcut.class 'highest'"):
        check_config(config)
    check_config(resolved())


def resolved(**changes: dict) -> dict:
    """The demo config with ``changes`` merged in and the schema's defaults, before the cross-field checks."""
    config = copy.deepcopy(DEMO)
    update_config(config, copy.deepcopy(changes))
    apply_demo(config, SCHEMA)
    config.setdefault("target", copy.deepcopy(DEMO["demo"]["target"]))  # an own catalog here has the demo's columns
    schema_validate(config)
    return config


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"results": "runs/{date}"}, "config key results: 'runs/{date}' holds braces"),
        (
            {"images": "data/{id}/{band}.fits"},
            "uses {band}; it may hold only {id} (and {results}); for one FITS file "
            "per band, list the bands in image.bands",
        ),
        ({"images": "data/{id}.fits", "image": {"bands": ["i", "r", "g"]}}, "has no {band} placeholder"),
        (
            {"images": "data/{band}/{id}.fits", "image": {"bands": ["i", "r"], "channels": 3}},
            "config key image.channels: 3, but image.bands names 2 bands",
        ),
        (
            {"images": "data/{id}.JPG", "image": {"channels": 5}},
            "image.channels: 5, but images 'data/{id}.JPG' names JPEG",
        ),
        ({"images": "data/{band!r}/{id}.fits", "image": {"bands": ["i", "r", "g"]}}, "writes {band!r}"),
        ({"images": "data/{id}/{id.jpg"}, "config key images: 'data/{id}/{id.jpg' has unbalanced braces"),
        ({"catalog": "data/{id}.csv"}, "config key catalog: 'data/{id}.csv' uses {id}"),
        ({"saliency": {"object": {"method": "masks", "masks": "m/{id}-{idx}.png"}}}, "saliency.object.masks"),
    ],
)
def test_paths_may_hold_only_their_own_placeholders(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        check_paths(resolved(**changes))
    assert message in str(error.value)


def test_per_band_files_are_named_by_image_bands() -> None:
    for bands in (["i", "r", "g"], ["r", "i"], ["u", "g", "r", "i", "z"]):
        config = resolved(images="data/{band}/{id}.fits", image={"bands": bands})
        check_paths(config)  # accepted
        assert Decoding.from_config(config["image"]).channels == len(bands)
    check_paths(resolved(images="data/{id}.fits", image={"channels": 5}))  # a cube of five bands
    assert Decoding.from_config(resolved()["image"]).channels == 3


def pattern_keys() -> list[str]:
    """Every key of the schema whose value is a path pattern (``$defs/path_pattern``)."""
    return [key for key, sub in schema_keys(SCHEMA) if sub.get("$ref") == "#/$defs/path_pattern"]


def nested(key: str, value: str) -> dict:
    """``{"a": {"b": value}}`` for the key "a.b"; a mask pattern comes with its method."""
    changes: dict = {key.rsplit(".", 1)[-1]: value}
    if key == "saliency.object.masks":
        changes["method"] = "masks"
    for part in reversed(key.split(".")[:-1]):
        changes = {part: changes}
    return changes


@pytest.mark.parametrize("key", pattern_keys())
@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("data/{{id}}.jpg", "the pattern 'data/{{id}}.jpg' has no {id} placeholder (doubled braces are literal text)"),
        ("data/{{{{id}}}}/x.jpg", "the pattern 'data/{{{{id}}}}/x.jpg' has no {id} placeholder"),
        ("data/{id}/{id!r}.jpg", "the pattern 'data/{id}/{id!r}.jpg' writes {id!r}; write {id} itself"),
        ("data/{id}/{id:>8}.jpg", "the pattern 'data/{id}/{id:>8}.jpg' writes {id:>8}; write {id} itself"),
        ("data/{{x}}/{id}.jpg", "the pattern 'data/{{x}}/{id}.jpg' holds literal braces ({{ or }})"),
    ],
    ids=["doubled", "quadrupled", "conversion", "format_spec", "literal_braces"],
)
def test_a_pattern_needs_id_as_a_live_placeholder(key: str, pattern: str, message: str) -> None:
    """The schema only asks for the text "{id}"; a pattern is filled with ``str.format``, in which "{{id}}" is
    the literal text {id}: every row would read one file named {id}.jpg, or be a missing_image."""
    with pytest.raises(ConfigError) as error:
        check_paths(resolved(**nested(key, pattern)))
    assert f"config key {key}: {message}" in str(error.value)
    for live in ("data/{id}.jpg", "{results}/x/{id}/{id}.png"):  # live placeholders pass
        check_paths(resolved(**nested(key, live)))


def test_a_run_checks_the_placeholders_before_its_first_job() -> None:
    assert pattern_keys() == ["images", "saliency.object.masks"]
    with pytest.raises(ConfigError, match=re.escape("config key images: the pattern 'data/{{id}}.jpg' has no {id}")):
        run_checks({"images": "data/{{id}}.jpg"})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"target": {"bins": [8.1, float("nan"), 9.3], "labels": ["low", "high"]}}, "target.bins must be numbers"),
        ({"pca": {"components": 200}}, "pca.components is 200, but simple_cnn has 128 penultimate features"),
        ({"saliency": {"gallery": {"where": "z < 0.1 and @os"}}}, "saliency.gallery.where 'z < 0.1 and @os'"),
        ({"model": {"weights": "w.pth", "checkpoint": "c.pth"}}, "model.weights and model.checkpoint: weights start"),
        ({"image": {"mean": [0.5, 0.5, 0.5]}}, "image.mean and image.std: give both"),
        ({"saliency": {"object_classes": ["high", "sky"]}}, "saliency.object_classes: ['sky'] are not kept classes"),
        (
            {"image": {"channels": 5, "mean": [0.5] * 3, "std": [0.2] * 3}},
            "config key image.mean: [0.5, 0.5, 0.5] has 3 values, one per band is needed (5",
        ),
    ],
)
def test_values_that_would_fail_after_training_fail_now(changes: dict, message: str) -> None:
    config = resolved(**changes)
    with pytest.raises(ConfigError) as error:
        check_config(config)
    assert message in str(error.value)
    check_config(resolved(target={"bins": [float("-inf"), 8.7, float("inf")], "labels": ["low", "high"]}))


def test_a_torchvision_network_is_checked_before_any_job() -> None:
    check_model(resolved(model={"arch": "torchvision:mobilenet_v2"}))
    with pytest.raises(ConfigError, match="config key model.arch 'torchvision:vit_b_16' cannot be audited"):
        check_model(resolved(model={"arch": "torchvision:vit_b_16"}))
    with pytest.raises(ConfigError, match="pca.components is 600, but torchvision:regnet_x_400mf has 400 penultimate"):
        check_model(resolved(model={"arch": "torchvision:regnet_x_400mf"}, pca={"components": 600}))


def test_a_grad_cam_layer_must_exist_and_give_a_feature_map() -> None:
    check_layer(resolved(audit={"layer": "body.1"}))
    for layer, message in (("body.7", "is not a module of this model"), ("head", "not a B x K x h x w")):
        with pytest.raises(ConfigError, match=f"config key audit.layer '{layer}'.*{message}"):
            check_layer(resolved(audit={"layer": layer}))


def test_catalog_columns_and_shards_are_checked_against_the_header(tmp_path: Path) -> None:
    catalog = tmp_path / "c.csv"
    catalog.write_text("objID;metallicity;z;shortcut\n1;8.5;0.1;0\n2;9.2;0.2;1\n")
    check_catalog(resolved(catalog=str(catalog)))
    for changes, message in (
        ({"saliency": {"truth_column": "planted"}}, "config key saliency.truth_column: column 'planted'"),
        ({"saliency": {"gallery": {"where": "redshift < 0.1"}}}, "config key saliency.gallery.where: column 'red"),
        ({"id_column": "objid"}, "did you mean 'objID'"),
        ({"audit": {"shards": 4}}, "config key audit.shards: 4 shards, but the catalog has at most 3 rows"),
    ):
        with pytest.raises(ConfigError, match=message) as error:
            check_catalog(resolved(catalog=str(catalog), **changes))
        if "column" in message:
            assert "header read with the semicolon delimiter" in str(error.value)
    check_catalog(resolved(catalog=str(tmp_path / "not-yet-written.csv")))  # the demo's, before simulate_demo


def test_every_job_rule_has_its_resource_defaults_in_the_schema() -> None:
    """The schema holds a default per job rule (no second table in the workflow), and only for job rules."""
    rules_text = "".join(path.read_text() for path in sorted((REPO / "workflow/rules").glob("*.smk")))
    rules = set(re.findall(r"^\s*rule (\w+):", rules_text, re.M))  # a conditional rule is indented
    local = re.search(r"localrules:\n((?:\s+\w+,\n)+)", (REPO / "workflow/Snakefile").read_text())
    jobs = rules - {name.strip(" ,\n") for name in local.group(1).split()}
    used = set(re.findall(r'rule_resources\("(\w+)"', rules_text))
    resources = SCHEMA["properties"]["resources"]["properties"]
    assert set(resources) == used == jobs
    assert all({"runtime", "mem_mb"} <= set(resources[name]["default"]) for name in resources)


def test_a_regression_config_is_checked_before_any_job() -> None:
    own = {"catalog": "/data/cat.csv", "images": "/data/img/{id}.fits", "target": {"column": "Z", "task": "regression"}}
    assert run_checks(own, {})["target"]["loss"] == "mse"
    for key in ("labels", "keep"):  # no classes to name without bins
        with pytest.raises(ConfigError, match=f"config key target.{key}: a regression without target.bins"):
            run_checks({**own, "target": {**own["target"], key: ["a", "b"]}}, {})
    run_checks({**own, "model": {"checkpoint": "/data/model.pt"}}, {})  # a trained regression is audited too
    # on the demo, a regression keeps the demo's bins to stratify (and its planted star)
    demo = run_checks({"target": {"task": "regression", "keep": ["low", "medium", "high"]}})
    assert demo["target"]["bins"] == [8.1, 8.7, 9.1, 9.3] and demo["target"]["task"] == "regression"
