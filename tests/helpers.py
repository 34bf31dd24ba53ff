"""Shared test helpers: the repository's paths, the tiny demo config and a runner for the real workflow."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from saliency_audit.config import with_defaults
from saliency_audit.model.training import TrainSettings, train_settings

REPO = Path(__file__).resolve().parents[1]
# The tiny demo lives where a person can run it too: snakemake --cores 2 --configfile .test/config/config.yaml
TINY_CONFIG = REPO / ".test/config/config.yaml"
TINY_DEMO: dict[str, Any] = yaml.safe_load(TINY_CONFIG.read_text())
# The demo's classes, for own catalogs made of the demo's files (the demo's own settings stay with the demo)
DEMO_TARGET: dict[str, Any] = yaml.safe_load((REPO / "config/config.yaml").read_text())["demo"]["target"]


def run_workflow(config: dict, results: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run Snakemake from the repository root with ``config`` on top of config/config.yaml."""
    results.mkdir(parents=True, exist_ok=True)
    configfile = results.parent / f"{results.name}-config.yaml"
    configfile.write_text(yaml.safe_dump({**config, "results": str(results)}))
    command = [sys.executable, "-m", "snakemake", "--cores", "2", *args, "--configfile", str(configfile)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    if check and done.returncode != 0:
        raise AssertionError(f"snakemake failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def resolved_settings(**changes: Any) -> TrainSettings:
    """Training settings as a run resolves them (the schema's defaults), with ``changes``."""
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    return train_settings({**with_defaults({"train": {}}, schema)["train"], **changes})
