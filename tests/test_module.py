"""The workflow deployed as a Snakemake module, the way snakedeploy deploys catalog workflows."""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import REPO, TINY_DEMO

pytestmark = pytest.mark.workflow

DEPLOYED = """\
configfile: "config/config.yaml"


module saliency_audit:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from saliency_audit
"""


def test_the_tiny_demo_runs_through_a_module_from_another_folder(tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    shutil.copytree(REPO / "config", deploy / "config")
    (deploy / "workflow").mkdir()
    (deploy / "workflow" / "Snakefile").write_text(DEPLOYED.format(snakefile=REPO / "workflow" / "Snakefile"))
    results = tmp_path / "results"
    (deploy / "tiny.yaml").write_text(yaml.safe_dump({**TINY_DEMO, "results": str(results)}))
    command = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "tiny.yaml"]
    done = subprocess.run(command, cwd=deploy, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    stats = pd.read_parquet(results / "saliency/stats.parquet")
    assert len(stats) == len(pd.read_parquet(results / "classes/labels.parquet"))
    assert (results / "provenance/provenance.csv").is_file()
    # every output goes under `results`: nothing but Snakemake's own state lands in the folder it runs from
    assert sorted(p.name for p in deploy.iterdir()) == [".snakemake", "config", "tiny.yaml", "workflow"]
    report = subprocess.run([*command, "--report", str(results / "report.html")], cwd=deploy, capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    assert report.returncode == 0, report.stdout + report.stderr
    assert (results / "report.html").stat().st_size > 100_000
