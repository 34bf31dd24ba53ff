import copy
import functools
import os
import sys

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# Paths from this file's own folder, never workflow.basedir (the first Snakefile parsed): when the
# workflow is used as a module from another folder, only these still point into this repository.
WORKFLOW_DIR = os.path.dirname(workflow.current_basedir.get_path_or_uri(secret_free=True))
REPO_DIR = os.path.dirname(WORKFLOW_DIR)
# The rule scripts' shared modules (config checks, loaders) live in scripts/.
sys.path.insert(0, os.path.join(REPO_DIR, "scripts"))
from saliency_audit.config import (  # noqa: E402
    DEMO_MASKS,
    ConfigError,
    describe_schema_error,
    is_demo,
    prepare_config,
)
from saliency_audit.runtime.manifest import image_manifest  # noqa: E402

with open(os.path.join(WORKFLOW_DIR, "schemas", "config.schema.yaml")) as handle:
    _schema = yaml.safe_load(handle)
try:
    prepare_config(config, _schema, lambda checked: validate(checked, "../schemas/config.schema.yaml"))
except (WorkflowError, ConfigError) as error:
    raise WorkflowError(describe_schema_error(error)) from None
RESOLVED_CONFIG = copy.deepcopy(dict(config))  # what the provenance table shows

RESULTS = config["results"]


def res(path):
    """A path under the results folder."""
    return os.path.join(RESULTS, path)


# The demo's images are written by simulate_demo (whose catalog validation already follows);
# any other image folder is part of the DAG through a manifest of its files (image_manifest).
SIMULATED = is_demo(config)


@functools.cache
def image_files():
    """The validate_catalog param that changes when any image file appears, disappears or changes."""
    if SIMULATED:
        return "written by simulate_demo"
    bands = config["image"]["bands"] or [""]
    return " ".join(image_manifest(config["images"].replace("{band}", band)) for band in bands)


@functools.cache
def mask_files():
    """The param of the rules that read object masks which changes when any mask file appears, disappears or
    changes (the demo's masks are written by simulate_demo; other methods read no mask)."""
    region = config["saliency"]["object"]
    if region["method"] != "masks":
        return "no masks"
    if SIMULATED and os.path.normpath(region["masks"]) == os.path.normpath(res(DEMO_MASKS)):
        return "written by simulate_demo"
    return image_manifest(region["masks"])


# How deep images become 8-bit pixels (image.stretch, softening, hdu): validation and packing read them alike.
DECODING = {key: config["image"][key] for key in ("stretch", "softening", "hdu", "bands", "channels")}
PACKED_PARTS = [res(f"images/part-{i}.npy") for i in range(config["audit"]["shards"])]
AUDIT_PARTS = [res(f"audit/part-{i}.parquet") for i in range(config["audit"]["shards"])]
AUDIT_MOMENTS = [res(f"moments/part-{i}.npz") for i in range(config["audit"]["shards"])]
PROBE_PARTS = [res(f"probes/part-{i}.parquet") for i in range(config["audit"]["shards"])]
REGION_PARTS = [res(f"regions/part-{i}.npy") for i in range(config["audit"]["shards"])]
REGION_PROBLEMS = [res(f"regions/problems-{i}.csv") for i in range(config["audit"]["shards"])]


# With --software-deployment-method conda every job runs in the repository's pinned environment.
ENVIRONMENT = os.path.join(REPO_DIR, "environment.yml")


def logfile(rule_name):
    return res(f"logs/{rule_name}.log")


def bench(rule_name):
    return res(f"benchmarks/{rule_name}.tsv")


def rule_resources(name, device=None):
    """Resources of one rule: the schema's default for it, the config's keys on top; a GPU is requested
    when the rule's device setting is cuda."""
    default = _schema["properties"]["resources"]["properties"][name]["default"]
    merged = {**default, **config["resources"].get(name, {})}
    if device == "cuda":
        merged.setdefault("gpu", 1)
    return merged
