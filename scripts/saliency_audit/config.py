"""Checks of the config that a JSON schema cannot express, and the {results} placeholder.

Called from workflow/rules/common.smk right after schema validation, so a bad
config stops the run before any job, with a message that names the key.
"""

import copy
import math
import os
import string
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import yaml

from saliency_audit.data.catalog_csv import CatalogReadError, catalog_columns, missing_column_message
from saliency_audit.data.catalog_filter import FilterError, filter_columns, parse_filter
from saliency_audit.data.classes import DIRECTIONS
from saliency_audit.data.image_io import input_channels
from saliency_audit.model.architectures import FEATURE_WIDTHS, TORCHVISION

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

RESULTS_PLACEHOLDER = "{results}"
# Where simulate_demo writes the demo; a catalog at DEMO_CATALOG is the demo, any other is the user's.
DEMO_CATALOG = "demo/catalog.csv"
DEMO_IMAGES = "demo/images/{id}.jpg"
DEMO_MASKS = "demo/masks/{id}.png"
DEMO_TRUTH_COLUMN = "shortcut"
PILLOW_SUFFIXES = (".jpg", ".jpeg", ".png")  # formats that hold gray or RGB only


class ConfigError(ValueError):
    """A config value is inconsistent with another; the message names the key."""


def dereferenced(node: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema node with its ``$ref`` (to ``$defs``) replaced by the definition, its own keys on top."""
    if "$ref" not in node:
        return node
    own = {k: v for k, v in node.items() if k != "$ref"}
    return {**schema["$defs"][node["$ref"].rsplit("/", 1)[-1]], **own}


def coerce_cli_strings(value: Any, node: dict[str, Any], schema: dict[str, Any]) -> Any:
    """Turn strings into numbers/booleans where the schema asks for them.

    ``--config 'image={"size": 96}'`` reaches the workflow as the string "96";
    without this a nested override of a number could never pass the schema.
    """
    node = dereferenced(node, schema)
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
    found = cast("ValidationError", inner)  # the exception with an absolute_path is jsonschema's
    key = ".".join(str(part) for part in found.absolute_path) or "(top level)"
    return f"invalid config: key {key}: {found.message}"


def placeholders(text: str) -> list[str]:
    """The ``{name}`` fields of a path (``{{`` and ``}}`` are literal braces), or ValueError."""
    return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]


def check_paths(config: dict[str, Any]) -> None:
    """Before ``{results}`` is resolved: the results folder holds no braces, the catalog only
    ``{results}``, and every pattern only ``{id}`` (and ``{results}``), with ``{id}`` live (``check_pattern``)."""
    if "{" in config["results"] or "}" in config["results"]:
        raise ConfigError(f"config key results: {config['results']!r} holds braces, which the results folder may not")
    bands = config["image"].get("bands")
    image_names = {"id", "band"} if bands else {"id"}
    patterns = {"catalog": (config["catalog"], set()), "images": (config["images"], image_names)}
    if "masks" in config["saliency"]["object"]:
        patterns["saliency.object.masks"] = (config["saliency"]["object"]["masks"], {"id"})
    for key, (value, allowed) in patterns.items():
        try:
            names = placeholders(value)
        except ValueError as error:
            raise ConfigError(f"config key {key}: {value!r} has unbalanced braces ({error})") from None
        others = sorted(set(names) - allowed - {"results"})
        if others:
            wanted = "only {id} (and {results})" if allowed else "no placeholder but {results}"
            hint = "; for one FITS file per band, list the bands in image.bands" if others[0] == "band" else ""
            raise ConfigError(f"config key {key}: {value!r} uses {{{others[0]}}}; it may hold {wanted}{hint}")
        if "id" in allowed:
            check_pattern(key, value)
    if bands and "band" not in placeholders(config["images"]):
        raise ConfigError(
            f"config key image.bands: {bands} names one file per band, but images {config['images']!r} has no "
            "{band} placeholder to name them by, e.g. /data/{band}/{id}.fits"
        )
    channels = config["image"].get("channels")
    if bands and channels is not None and channels != len(bands):
        raise ConfigError(
            f"config key image.channels: {channels}, but image.bands names {len(bands)} bands {bands}; "
            "leave image.channels out to take one per band"
        )
    if channels not in (None, 1, 3) and not bands and config["images"].lower().endswith(PILLOW_SUFFIXES):
        raise ConfigError(
            f"config key image.channels: {channels}, but images {config['images']!r} names JPEG/PNG files, "
            "which are gray or RGB (1 or 3); give FITS cubes or one FITS file per band (image.bands)"
        )


def check_pattern(key: str, pattern: str) -> None:
    """A path pattern must hold ``{id}`` as a live, plain field and no other brace.

    Every reader fills it with ``pattern.format(id=...)`` (validation, the mask regions), in
    which "{{id}}" is the literal text {id}: every row would read one file of that name, or be
    a missing_image. The image manifest, which notices changed files, matches the pattern's own
    text split at "{id}": a conversion or format spec ("{id!r}", "{id:>8}") or a literal brace
    elsewhere ("{{x}}" is the folder "{x}") would make it watch other files than those read.
    """
    parsed = list(string.Formatter().parse(pattern))
    for _, name, spec, conversion in parsed:
        if name in ("id", "band") and (spec or conversion):
            written = f"{{{name}" + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise ConfigError(
                f"config key {key}: the pattern {pattern!r} writes {written}; write {{{name}}} itself "
                "(the file name holds it as it is)"
            )
    if not any(name == "id" for _, name, _, _ in parsed):
        hint = " (doubled braces are literal text)" if "{{" in pattern else ""
        raise ConfigError(
            f"config key {key}: the pattern {pattern!r} has no {{id}} placeholder{hint}, so every row would "
            "read the same file; write {id} with single braces, e.g. data/cutouts/{id}.jpg"
        )
    if any("{" in literal or "}" in literal for literal, _, _, _ in parsed):
        raise ConfigError(
            f"config key {key}: the pattern {pattern!r} holds literal braces ({{{{ or }}}}); only {{id}} (and "
            "{results}) may be in braces: move the files to a folder whose name has no braces"
        )


def under_results(path: str, results: str) -> str:
    """``path`` with "{results}" replaced by the results folder."""
    return path.replace(RESULTS_PLACEHOLDER, results.rstrip("/") or "/")


def is_demo(config: dict[str, Any]) -> bool:
    """Whether the catalog is the one simulate_demo writes (before or after "{results}" is resolved)."""
    results = config.get("results", "results")
    catalog = config.get("catalog")
    if not isinstance(catalog, str) or not isinstance(results, str):
        return False
    return os.path.normpath(under_results(catalog, results)) == os.path.normpath(os.path.join(results, DEMO_CATALOG))


def apply_demo(config: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Give the demo its own target, true masks and truth column, and only the demo.

    Runs before schema validation, so it sees which keys the user set: those win (on the demo,
    keys of ``target`` replace those of ``demo.target``). Keeping
    these settings out of the top-level keys of config/config.yaml is what lets an own
    catalog be added with a plain ``--configfile`` (Snakemake merges it into the demo's
    config key by key, so a demo value there would leak into every own run).
    """
    if not is_demo(config):
        return config
    demo = config.get("demo") or {}
    target = demo.get("target", schema["properties"]["demo"]["properties"]["target"]["default"])
    given = config.get("target") or {}
    if isinstance(given, dict):  # anything else is left for the schema to reject
        config["target"] = {**copy.deepcopy(target), **given}
    saliency = config.setdefault("saliency", {})
    if not isinstance(saliency, dict):
        return config
    saliency.setdefault("object", {"method": "masks", "masks": f"{RESULTS_PLACEHOLDER}/{DEMO_MASKS}"})
    saliency.setdefault("truth_column", DEMO_TRUTH_COLUMN)
    return config


def resolve_results(config: dict[str, Any]) -> dict[str, Any]:
    """Replace "{results}" in the path keys with the results folder (so the demo moves with it)."""
    for key in ("catalog", "images"):
        config[key] = under_results(config[key], config["results"])
    region = config["saliency"]["object"]
    if "masks" in region:
        region["masks"] = under_results(region["masks"], config["results"])
    return config


def check_config(config: dict[str, Any]) -> None:
    """Raise ConfigError for cross-field mistakes in target, audit, saliency and demo."""
    target = config["target"]
    if "bins" in target:
        bins, labels = target["bins"], target["labels"]
        if any(math.isnan(edge) for edge in bins):
            raise ConfigError(f"target.bins must be numbers (inf and -inf are allowed), got {bins}")
        if any(lo >= hi for lo, hi in zip(bins, bins[1:])):
            raise ConfigError(f"target.bins must increase strictly, got {bins}")
        if len(labels) != len(bins) - 1:
            raise ConfigError(
                f"target.labels needs one label per bin: {len(bins) - 1} bins from target.bins {bins}, "
                f"but {len(labels)} labels {labels}"
            )
    if target.get("task") == "regression" and "bins" not in target:
        for key in ("labels", "keep"):
            if key in target:
                raise ConfigError(
                    f"config key target.{key}: a regression without target.bins has no classes to name or keep; "
                    f"remove target.{key}, or give target.bins to stratify the split by them"
                )
    known = target.get("labels")
    if "keep" in target and known is not None:
        unknown = [k for k in target["keep"] if k not in known]
        if unknown:
            raise ConfigError(f"target.keep names {unknown}, which are not in target.labels {known}")
    object_classes = config["saliency"].get("object_classes")
    kept = DIRECTIONS if target.get("task") == "regression" else target.get("keep") or known
    if object_classes is not None and kept is not None:
        unknown = [name for name in object_classes if name not in kept]
        if unknown:
            raise ConfigError(f"config key saliency.object_classes: {unknown} are not kept classes {list(kept)}")
    model = config["model"]  # a missing weights or checkpoint file is a missing input, which Snakemake names
    if model.get("weights") and model.get("checkpoint"):
        raise ConfigError("config keys model.weights and model.checkpoint: weights start a training, a checkpoint "
                          "replaces it; give one")  # fmt: skip
    image = config["image"]
    if (image.get("mean") is None) != (image.get("std") is None):
        raise ConfigError("config keys image.mean and image.std: give both (the input normalisation) or neither")
    for key in ("mean", "std"):
        if image.get(key) is not None and len(image[key]) != input_channels(image):
            raise ConfigError(f"config key image.{key}: {image[key]} has {len(image[key])} values, one per band "
                              f"is needed ({input_channels(image)}: image.channels / image.bands)")  # fmt: skip
    audit = config["audit"]
    width = FEATURE_WIDTHS.get(config["model"]["arch"])
    if width is not None and config["pca"]["components"] > width:
        raise ConfigError(
            f"pca.components is {config['pca']['components']}, but {config['model']['arch']} has {width} "
            f"penultimate features; set it to at most {width}"
        )
    where = config["saliency"].get("gallery", {}).get("where")
    if where:
        try:
            parse_filter(where)
        except FilterError as error:
            raise ConfigError(f"config key saliency.gallery.where {where!r}: {error}") from None
    if audit.get("compile") and audit["layer"] != "auto":
        raise ConfigError(
            f"audit.compile works only with audit.layer: auto (the model's last block), not {audit['layer']!r}: "
            "a hook at another layer cuts the compiled graph"
        )
    if is_demo(config):
        shortcut = config["demo"]["shortcut"]
        if shortcut["kind"] != "none" and "bins" in target and shortcut["class"] not in target["labels"]:
            raise ConfigError(
                f"demo.shortcut.class {shortcut['class']!r} is not one of target.labels {target['labels']}"
            )
    elif config["images"] == f"{RESULTS_PLACEHOLDER}/{DEMO_IMAGES}":
        raise ConfigError(
            f"config key images: your catalog {config['catalog']!r} is not the demo's, but images is still the "
            f'demo\'s {config["images"]!r}; set it to the path pattern of your cutouts, e.g. "/data/img/{{id}}.jpg"'
        )


def check_model(config: dict[str, Any]) -> None:
    """A ``torchvision:<name>`` architecture must be one the audit can split, with at least
    ``pca.components`` penultimate features (builds it, so imports torch; only for these runs)."""
    arch = config["model"]["arch"]
    if not arch.startswith(TORCHVISION):
        return
    from saliency_audit.model.factory import build_model  # noqa: PLC0415  (torch: seconds at start-up)

    try:
        width = build_model(arch, 2).n_features
    except ValueError as error:
        raise ConfigError(f"config key {error}") from None
    if config["pca"]["components"] > width:
        raise ConfigError(
            f"pca.components is {config['pca']['components']}, but {arch} has {width} penultimate features; "
            f"set it to at most {width}"
        )


def check_layer(config: dict[str, Any]) -> None:
    """A Grad-CAM layer other than auto must exist and output a feature map (imports torch, so only then)."""
    layer = config["audit"]["layer"]
    if layer == "auto":
        return
    from saliency_audit.model.factory import layer_problem  # noqa: PLC0415  (torch: seconds at start-up, so only when needed)

    problem = layer_problem(config["model"]["arch"], config["model"]["stride"], layer, config["image"]["size"])
    if problem is not None:
        raise ConfigError(problem.replace("audit.layer", "config key audit.layer", 1))


def with_defaults(config: dict[str, Any], schema: dict[str, Any], node: dict[str, Any] | None = None) -> dict[str, Any]:
    """``config`` with the schema's default filled in for every key it leaves out, at every depth.

    The one place defaults come from: the workflow calls it before validation (so a module host that
    skips validation still gets them), and the code never repeats a default of its own.
    """
    node = dereferenced(schema if node is None else node, schema)
    for name, sub in node.get("properties", {}).items():
        if name not in config and "default" in sub:
            config[name] = copy.deepcopy(sub["default"])
        if isinstance(config.get(name), dict):
            with_defaults(config[name], schema, sub)
    return config


def prepare_config(config: dict[str, Any], schema: dict[str, Any], validate: Callable[[dict[str, Any]], Any]) -> None:
    """Every check a run makes before its first job, in order, on ``config`` in place.

    ``validate`` is the schema validation that fills in defaults (Snakemake's ``validate``);
    the workflow and the tests of the documented configs call this same sequence.
    """
    config.update(coerce_cli_strings(dict(config), schema, schema))
    apply_demo(config, schema)
    with_defaults(config, schema)
    validate(config)
    check_paths(config)
    check_config(config)
    resolve_results(config)
    check_catalog(config)
    check_model(config)
    check_layer(config)


def config_columns(config: dict[str, Any]) -> dict[str, str]:
    """Every catalog column the config names, with its key."""
    columns = {config["id_column"]: "id_column", config["target"]["column"]: "target.column"}
    saliency = config["saliency"]
    if saliency.get("truth_column"):
        columns.setdefault(saliency["truth_column"], "saliency.truth_column")
    region = saliency["object"]
    if region["method"] == "circle":
        columns.setdefault(region["radius_column"], "saliency.object.radius_column")
    if region["method"] == "ellipse":
        for name, column in region["columns"].items():
            columns.setdefault(column, f"saliency.object.columns.{name}")
    where = saliency["gallery"].get("where")
    for column in sorted(filter_columns(parse_filter(where))) if where else []:
        columns.setdefault(column, "saliency.gallery.where")
    return columns


def check_catalog(config: dict[str, Any]) -> None:
    """Columns the config names must be in the catalog's header, and audit.shards may not exceed
    its rows. Only for a regular file that exists: a catalog the workflow writes (the demo) or
    a FIFO (which must be read once) is checked by validate_catalog instead."""
    path = config["catalog"]
    if not os.path.isfile(path):
        return
    try:
        header, delimiter = catalog_columns(path, config["catalog_delimiter"])
    except (OSError, CatalogReadError) as error:
        raise ConfigError(f"config key catalog: {path} cannot be read ({error})") from None
    for column, key in config_columns(config).items():
        if column not in header:
            raise ConfigError(missing_column_message(column, key, header, delimiter))
    shards = config["audit"]["shards"]
    if shards > 1 and os.path.getsize(path) < 1 << 26:
        with open(path, "rb") as handle:
            most_rows = handle.read().count(b"\n")  # lines after the header: at least the data rows
        if shards > most_rows:
            raise ConfigError(
                f"config key audit.shards: {shards} shards, but the catalog has at most {most_rows} rows; "
                "every shard needs images"
            )
