"""Checks of the config that a JSON schema cannot express, and the {results} placeholder.

Called from workflow/rules/common.smk right after schema validation, so a bad
config stops the run before any job, with a message that names the key.
"""

from typing import Any

import yaml

RESULTS_PLACEHOLDER = "{results}"


class ConfigError(ValueError):
    """A config value is inconsistent with another; the message names the key."""


def coerce_cli_strings(value: Any, node: dict[str, Any], schema: dict[str, Any]) -> Any:
    """Turn strings into numbers/booleans where the schema asks for them.

    ``--config 'image={"size": 96}'`` reaches the workflow as the string "96";
    without this a nested override of a number could never pass the schema.
    """
    if "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    if isinstance(value, dict):
        properties = node.get("properties", {})
        return {k: coerce_cli_strings(v, properties.get(k, {}), schema) for k, v in value.items()}
    if isinstance(value, list):
        return [coerce_cli_strings(v, node.get("items", {}), schema) for v in value]
    if isinstance(value, str):
        types = node.get("type", [])
        types = {types} if isinstance(types, str) else set(types)
        types |= {type(v).__name__ for v in node.get("enum", []) if not isinstance(v, str)}
        if types & {"integer", "number", "boolean", "int", "bool", "float"}:
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                return value
            if isinstance(parsed, (int, float, bool)):
                return parsed
    return value


def describe_schema_error(error: BaseException) -> str:
    """One line naming the offending key, from the jsonschema error behind Snakemake's."""
    inner: BaseException | None = error
    while inner is not None and not hasattr(inner, "absolute_path"):
        inner = inner.__cause__ or inner.__context__
    if inner is None:
        return f"invalid config: {error}"
    key = ".".join(str(part) for part in inner.absolute_path) or "(top level)"
    return f"invalid config: key {key}: {inner.message}"


def resolve_results(config: dict[str, Any]) -> dict[str, Any]:
    """Replace "{results}" in the path keys with the results folder (so the demo moves with it)."""
    results = config["results"].rstrip("/") or "/"
    for key in ("catalog", "images"):
        config[key] = config[key].replace(RESULTS_PLACEHOLDER, results)
    region = config["saliency"]["object"]
    if "masks" in region:
        region["masks"] = region["masks"].replace(RESULTS_PLACEHOLDER, results)
    return config


def check_config(config: dict[str, Any]) -> None:
    """Raise ConfigError for cross-field mistakes in target, audit, saliency and demo."""
    target = config["target"]
    if "bins" in target:
        bins, labels = target["bins"], target["labels"]
        if any(lo >= hi for lo, hi in zip(bins, bins[1:])):
            raise ConfigError(f"target.bins must increase strictly, got {bins}")
        if len(labels) != len(bins) - 1:
            raise ConfigError(
                f"target.labels needs one label per bin: {len(bins) - 1} bins from target.bins {bins}, "
                f"but {len(labels)} labels {labels}"
            )
    known = target.get("labels")
    if "keep" in target and known is not None:
        unknown = [k for k in target["keep"] if k not in known]
        if unknown:
            raise ConfigError(f"target.keep names {unknown}, which are not in target.labels {known}")
    audit = config["audit"]
    if audit.get("compile") and audit["layer"] != "auto":
        raise ConfigError(
            f"audit.compile works only with audit.layer: auto (the model's last block), not {audit['layer']!r}: "
            "a hook at another layer cuts the compiled graph"
        )
    shortcut = config["demo"]["shortcut"]
    if shortcut["kind"] != "none" and "bins" in target and shortcut["class"] not in target["labels"]:
        raise ConfigError(f"demo.shortcut.class {shortcut['class']!r} is not one of target.labels {target['labels']}")
