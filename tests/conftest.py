"""Shared fixtures: a tiny demo run of the real workflow, reused by the end-to-end tests."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# The demo's classes, for own catalogs made of the demo's files (the demo's own settings stay with the demo)
DEMO_TARGET = yaml.safe_load((REPO / "config/config.yaml").read_text())["demo"]["target"]

TINY_DEMO = {
    "image": {"size": 48},
    "train": {"epochs": 2, "lr": 0.02, "batch_size": 16},
    "saliency": {"gallery": {"n": 3}},  # matplotlib draws the galleries: the slowest job of a tiny run
    "demo": {"n_galaxies": 60, "seed": 7, "shortcut": {"kind": "star", "class": "high", "fraction": 0.5}},
}


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


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Results folder of the whole workflow on a 60-galaxy demo."""
    results = tmp_path_factory.mktemp("tiny") / "results"
    run_workflow(TINY_DEMO, results)
    return results
