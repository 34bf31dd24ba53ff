"""The workflow on a real single-node Slurm (tests/slurm/cluster.sh).

One tiny demo with ``audit.shards: 3`` runs through ``--profile workflow/profiles/slurm`` in
three steps: packing; then the rest while packed part 1 is damaged on disk, so that audit
shard 1 fails; then again after the damaged part is deleted. The final tables must equal a
local run's, every non-local rule must have been its own Slurm job, and the last step must
redo only what depends on the damaged part.
"""

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import REPO, TINY_DEMO

pytestmark = pytest.mark.slurm

CLUSTER = REPO / "tests/slurm/cluster.sh"
SLURM_OPTIONS = (
    "--slurm-status-command", "squeue",  # the test cluster has no accounting database (sacct)
    "--slurm-init-seconds-before-status-checks", "2",
    "--seconds-between-status-checks", "2",  # the default 10 s, paid by each of ~40 short jobs in turn
    "--slurm-no-account",
)  # fmt: skip
LOCAL_RULES = {"all", "validate_catalog", "bin_classes", "saliency_summary", "provenance"}
JOB_RULES = {"simulate_demo", "pack_images", "gather_images", "near_duplicates", "train", "evaluate", "audit",
             "regions", "probes", "pca", "label_problems", "saliency_stats", "strategy_clusters", "score_twins",
             "galleries", "backgrounds", "explorer"}  # fmt: skip


@dataclass
class SlurmRun:
    returncode: int
    log: str
    seconds: float
    jobs: list[tuple[str, str]]  # (job, Slurm state); job is "<rule>" or "<rule>_<shard>"


def snakemake_on_slurm(configfile: Path, *args: str) -> SlurmRun:
    command = [sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/slurm",
               "--configfile", str(configfile), *SLURM_OPTIONS, *args]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1200)
    seconds = time.perf_counter() - started
    log = done.stdout + done.stderr
    listed = subprocess.run(
        ["squeue", "--states=all", "-h", "-o", "%i|%T|%k"], capture_output=True, text=True, check=True
    ).stdout
    known = {job_id: (state, comment) for job_id, state, comment in (line.split("|") for line in listed.splitlines())}
    jobs = []
    for job_id in re.findall(r"submitted with SLURM jobid (\d+)", log):
        state, comment = known.get(job_id, ("NOT_LISTED", job_id))
        jobs.append((re.sub(r"^rule_(\w+?)(?:_wildcards_(\d+))?$", lambda m: "_".join(filter(None, m.groups())),
                            comment), state))  # fmt: skip
    print(f"snakemake on Slurm {' '.join(args)}: {seconds:.0f} s, {len(jobs)} jobs")
    return SlurmRun(done.returncode, log, seconds, jobs)


@pytest.fixture(scope="module")
def slurm() -> Iterator[None]:
    started = subprocess.run([str(CLUSTER), "start"], capture_output=True, text=True, timeout=600)
    if started.returncode != 0:
        pytest.fail(f"could not start the test Slurm cluster:\n{started.stdout}\n{started.stderr}")
    yield
    subprocess.run([str(CLUSTER), "stop"], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def runs(slurm: None, tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("slurm")
    results = folder / "results"
    configfile = folder / "config.yaml"
    configfile.write_text(yaml.safe_dump({**TINY_DEMO, "audit": {"shards": 3}, "results": str(results)}))

    packed = snakemake_on_slurm(configfile, str(results / "images/images.npy"))
    assert packed.returncode == 0, packed.log

    # damage packed part 1 the way a bad copy would: same size and time, so Snakemake sees nothing
    part = results / "images/part-1.npy"
    stat = part.stat()
    part.write_bytes(b"\0" * stat.st_size)
    os.utime(part, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    failed = snakemake_on_slurm(configfile, "--keep-going", "--retries", "0")
    kept = {p.name: p.stat().st_mtime_ns for p in (results / "audit").glob("part-*.parquet")}
    failed_shard_log = (results / "logs/audit/1.log").read_text()

    part.unlink()  # the fix a user makes: delete the damaged part so that it is packed again
    repaired = snakemake_on_slurm(configfile)
    assert repaired.returncode == 0, repaired.log
    return {"results": results, "packed": packed, "failed": failed, "repaired": repaired, "kept": kept,
            "failed_shard_log": failed_shard_log}  # fmt: skip


def test_every_job_rule_ran_as_its_own_completed_slurm_job(runs: dict) -> None:
    jobs = [job for run in ("packed", "failed", "repaired") for job in runs[run].jobs]
    rules = {re.sub(r"_\d+$", "", name) for name, _ in jobs}
    assert rules == JOB_RULES and not LOCAL_RULES & rules, jobs
    assert sorted(name for name, _ in runs["packed"].jobs) == [
        "gather_images", "pack_images_0", "pack_images_1", "pack_images_2", "simulate_demo",
    ]  # fmt: skip
    for run in ("packed", "repaired"):
        assert all(state == "COMPLETED" for _, state in runs[run].jobs), runs[run].jobs


def test_a_damaged_packed_part_fails_only_its_audit_and_regions_shards(runs: dict) -> None:
    failed: SlurmRun = runs["failed"]
    assert failed.returncode != 0
    states: dict[str, set[str]] = {}
    for name, state in failed.jobs:
        states.setdefault(name, set()).add(state)
    assert states == {  # evaluate scores every shard's predictions: it waits for the repair
        "train": {"COMPLETED"},
        "audit_0": {"COMPLETED"}, "audit_2": {"COMPLETED"}, "audit_1": {"FAILED"},
        "regions_0": {"COMPLETED"}, "regions_2": {"COMPLETED"}, "regions_1": {"FAILED"},
        "probes_0": {"COMPLETED"}, "probes_2": {"COMPLETED"},  # probes_1 waits for its audit and regions
        "score_twins": {"COMPLETED"},  # reads the gathered array, which was packed before the damage
        "near_duplicates": {"COMPLETED"},  # likewise
    }, failed.jobs  # fmt: skip
    assert "images/part-1.npy is not a packed image array (no .npy header)" in runs["failed_shard_log"]
    assert sorted(runs["kept"]) == ["part-0.parquet", "part-2.parquet"]


def test_the_rerun_redoes_only_what_the_damaged_part_feeds(runs: dict) -> None:
    names = sorted(name for name, _ in runs["repaired"].jobs)
    assert names == [
        "audit_1", "backgrounds", "evaluate", "explorer", "galleries", "gather_images", "label_problems",
        "near_duplicates", "pack_images_1", "pca", "probes_1", "regions_1", "saliency_stats", "score_twins",
        "strategy_clusters",
    ]  # fmt: skip
    audit = runs["results"] / "audit"
    assert {name: (audit / name).stat().st_mtime_ns for name in runs["kept"]} == runs["kept"]


def test_tables_equal_the_local_run(runs: dict, tiny_demo: Path) -> None:
    results = runs["results"]
    for table in ("classes/labels.parquet", "eval/predictions.parquet", "pca/pca.parquet", "saliency/stats.parquet"):
        remote, local = pd.read_parquet(results / table), pd.read_parquet(tiny_demo / table)
        assert list(remote.columns) == list(local.columns), table
        for column in remote.columns:
            if pd.api.types.is_float_dtype(remote[column]):
                np.testing.assert_allclose(remote[column], local[column], rtol=1e-4, atol=1e-5, err_msg=table)
            else:
                assert remote[column].astype(str).tolist() == local[column].astype(str).tolist(), (table, column)
    # no stray part; the hidden files are the audit's kept versions for reuse (reuse.py) and checksums
    visible = sorted(p.name for p in (results / "audit").iterdir() if not p.name.startswith("."))
    assert visible == [f"part-{i}.parquet" for i in range(3)]
    np.testing.assert_array_equal(np.load(results / "images/images.npy"), np.load(tiny_demo / "images/images.npy"))
