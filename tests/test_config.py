import copy
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from config_checks import (
    ConfigError,
    check_catalog,
    check_config,
    check_layer,
    check_paths,
    coerce_cli_strings,
    resolve_results,
)

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


def resolved(**changes: dict) -> dict:
    """The demo config with the schema's defaults, as the workflow checks it."""
    config = copy.deepcopy(DEMO)
    for key, value in changes.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) and key in config else value
    Draft202012Validator(SCHEMA).validate(config)
    config.setdefault("catalog_delimiter", None)
    config["saliency"].setdefault("gallery", {})
    config["audit"].setdefault("layer", "auto")
    return config


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"results": "runs/{date}"}, "config key results: 'runs/{date}' holds braces"),
        ({"images": "data/{id}/{band}.fits"}, "config key images: 'data/{id}/{band}.fits' uses {band}"),
        ({"images": "data/{id}/{id.jpg"}, "config key images: 'data/{id}/{id.jpg' has unbalanced braces"),
        ({"catalog": "data/{id}.csv"}, "config key catalog: 'data/{id}.csv' uses {id}"),
        ({"saliency": {"object": {"method": "masks", "masks": "m/{id}-{idx}.png"}}}, "saliency.object.masks"),
    ],
)
def test_paths_may_hold_only_their_own_placeholders(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        check_paths(resolved(**changes))
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"target": {"bins": [8.1, float("nan"), 9.3], "labels": ["low", "high"]}}, "target.bins must be numbers"),
        ({"pca": {"components": 200}}, "pca.components is 200, but simple_cnn has 128 penultimate features"),
        ({"saliency": {"gallery": {"where": "z < 0.1 and @os"}}}, "saliency.gallery.where 'z < 0.1 and @os'"),
    ],
)
def test_values_that_would_fail_after_training_fail_now(changes: dict, message: str) -> None:
    config = resolved(**changes)
    with pytest.raises(ConfigError) as error:
        check_config(config)
    assert message in str(error.value)
    check_config(resolved(target={"bins": [float("-inf"), 8.7, float("inf")], "labels": ["low", "high"]}))


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
