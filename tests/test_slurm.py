"""The workflow on a real single-node Slurm (tests/slurm/cluster.sh): same tables as a local run, one job per rule."""

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, TINY_DEMO

CLUSTER = REPO / "tests/slurm/cluster.sh"
SLURM_OPTIONS = (
    "--slurm-status-command", "squeue",  # the test cluster has no accounting database (sacct)
    "--slurm-init-seconds-before-status-checks", "5",
    "--slurm-no-account",
)  # fmt: skip
LOCAL_RULES = {"all", "validate_catalog", "bin_classes", "saliency_summary", "provenance"}
JOB_RULES = {"simulate_demo", "pack_images", "train", "evaluate", "audit", "pca", "saliency_stats",
             "strategy_clusters", "galleries"}  # fmt: skip


@pytest.fixture(scope="module")
def slurm() -> Iterator[None]:
    started = subprocess.run([str(CLUSTER), "start"], capture_output=True, text=True, timeout=600)
    if started.returncode != 0:
        pytest.fail(f"could not start the test Slurm cluster:\n{started.stdout}\n{started.stderr}")
    yield
    subprocess.run([str(CLUSTER), "stop"], capture_output=True, timeout=60)


def test_tiny_demo_on_slurm_matches_the_local_run(slurm: None, tiny_demo: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump({**TINY_DEMO, "audit": {"shards": 3}, "results": str(results)}))
    command = [sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/slurm",
               "--configfile", str(configfile), *SLURM_OPTIONS]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1200)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log

    submitted = re.findall(r"submitted with SLURM jobid (\d+) \(log: [^)]*/rule_(\w+?)/", log)
    rules = [rule for _, rule in submitted]
    assert set(rules) == JOB_RULES and rules.count("audit") == 3, rules
    assert not LOCAL_RULES & set(rules)
    states = dict(
        line.split()
        for line in subprocess.run(
            ["squeue", "--states=all", "-h", "-o", "%i %T"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
    )
    assert all(states.get(job) == "COMPLETED" for job, _ in submitted), (submitted, states)

    for table in ("classes/labels.parquet", "eval/predictions.parquet", "pca/pca.parquet", "saliency/stats.parquet"):
        remote, local = pd.read_parquet(results / table), pd.read_parquet(tiny_demo / table)
        assert list(remote.columns) == list(local.columns), table
        for column in remote.columns:
            if pd.api.types.is_float_dtype(remote[column]):
                np.testing.assert_allclose(remote[column], local[column], rtol=1e-4, atol=1e-5, err_msg=table)
            else:
                assert remote[column].astype(str).tolist() == local[column].astype(str).tolist(), (table, column)
    assert sorted(p.name for p in (results / "audit").iterdir()) == [f"part-{i}.parquet" for i in range(3)]
