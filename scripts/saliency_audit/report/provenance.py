"""What produced this run, as one table for the report (rule ``provenance``).

The resolved config (one row per key), the versions of the packages that
shape the numbers, the workflow's git commit, the device the model was trained
on, checksums of the catalog and of the packed image array, and how many
catalog rows were used or excluded.
"""

import json
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from saliency_audit.model.checkpoint import read_checkpoint
from saliency_audit.runtime.checksums import verified_sha256
from saliency_audit.runtime.settings import flatten

PACKAGES = ("torch", "torchvision", "snakemake", "pandas", "pyarrow", "numpy", "galsim", "scikit-learn", "matplotlib")


def package_versions() -> list[tuple[str, str]]:
    """(name, version) of Python and of each package in ``PACKAGES``, the ones that shape the numbers."""
    rows = [("python", platform.python_version())]
    for name in PACKAGES:
        try:
            rows.append((name, version(name)))
        except PackageNotFoundError:
            rows.append((name, "not installed"))
    return rows


def git_commit(folder: Path) -> str:
    """The workflow's commit, marked when the working tree has changes; 'none' outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=folder, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "none (not a git checkout)"
    return commit.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def model_source(source: dict[str, Any]) -> list[tuple[str, str]]:
    """Where the model comes from: trained here (from scratch or from ``model.weights``) or imported
    (``model.checkpoint``), with the checksums of the files it came from."""
    if source.get("trained_here", True):
        rows = [("model trained here", "yes")]
        if source.get("weights"):
            rows += [("training started from", str(source["weights"])),
                     ("starting weights SHA-256", str(source["weights_sha256"]))]  # fmt: skip
        return rows
    return [("model trained here", "no: imported by model.checkpoint"), ("imported from", str(source["checkpoint"])),
            ("imported file SHA-256", str(source["sha256"]))]  # fmt: skip


def provenance_table(
    config: dict[str, Any],
    workflow_dir: Path,
    files: dict[str, Path],
    source: dict[str, Any],
    n_valid_rows: int,
    n_used: int,
) -> pd.DataFrame:
    """section, item, value rows; ``files`` holds the catalog, packed images and model paths, ``source``
    what validation read (the catalog's SHA-256 and its number of data rows, malformed ones included).

    The catalog itself is not read again: it may be a FIFO, and its checksum is that of the
    bytes validation used.
    """
    checkpoint = read_checkpoint(files["model"])
    n_rows = int(source["catalog_rows"])
    run = [
        ("workflow git commit", git_commit(workflow_dir)),
        ("training device", str(checkpoint.get("device_name", checkpoint.get("device", "unknown")))),
        ("catalog", str(files["catalog"])),
        ("catalog SHA-256", source["catalog_sha256"]),
        ("packed images SHA-256", verified_sha256(files["images"])),
        ("model SHA-256", checkpoint["file_sha256"]),
        *model_source(checkpoint.get("source", {})),
        ("catalog rows", str(n_rows)),
        ("rows excluded by validation (integrity table)", str(n_rows - n_valid_rows)),
        ("rows outside the kept classes", str(n_valid_rows - n_used)),
        ("images used", str(n_used)),
    ]
    rows = [("run", item, value) for item, value in run]
    rows += [("package", name, value) for name, value in package_versions()]
    rows += [("config", key, value) for key, value in flatten(config)]
    return pd.DataFrame(rows, columns=["section", "item", "value"])


def run_provenance(
    config: dict[str, Any],
    workflow_dir: str | os.PathLike,
    catalog: str | os.PathLike,
    images: str | os.PathLike,
    model: str | os.PathLike,
    clean: str | os.PathLike,
    labels: str | os.PathLike,
) -> pd.DataFrame:
    """The provenance table from the rule's inputs: what validation recorded in the clean catalog's
    metadata, and the numbers of rows of the clean catalog and of the labels table."""
    return provenance_table(
        config,
        Path(workflow_dir),
        {"catalog": Path(catalog), "images": Path(images), "model": Path(model)},
        json.loads(pq.read_schema(clean).metadata[b"saliency_audit"]),
        len(pd.read_parquet(clean, columns=["id"])),
        len(pd.read_parquet(labels, columns=["id"])),
    )
