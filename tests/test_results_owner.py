"""One results folder, one writer: the lock in the results folder and the record of the settings that made it."""

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import REPO
from saliency_audit.runtime.results_owner import (
    LOCK_NAME,
    ResultsClaimed,
    check_and_record,
    forceall_requested,
    lock_results,
)

SETTINGS = {"train": {"seed": 0, "lr": 0.02}, "image": {"size": 48}, "resources": {"train": {"mem_mb": 1}}}


def test_a_second_writer_is_refused_and_named_until_the_first_ends(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            sys.path.insert(0, {str(REPO / "scripts")!r})
            from saliency_audit.runtime.results_owner import lock_results
            handle = lock_results({str(tmp_path)!r}, "/checkout/one")
            print("locked", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(ResultsClaimed, match=rf"another run \(process {holder.pid} on .*from /checkout/one\)"):
            lock_results(tmp_path, "/checkout/two")
    finally:
        holder.kill()  # a run that dies leaves no lock behind
        holder.wait()
    lock_results(tmp_path, "/checkout/two").close()
    assert (tmp_path / LOCK_NAME).is_file()


def test_another_checkout_with_other_settings_is_refused_unless_it_computes_everything(tmp_path: Path) -> None:
    check_and_record(tmp_path, "/checkout/one", SETTINGS, "code-1", force_all=False)
    seed_7 = {**SETTINGS, "train": {"seed": 7, "lr": 0.02}}
    check_and_record(tmp_path, "/checkout/one", seed_7, "code-1", force_all=False)  # Snakemake there follows it
    with pytest.raises(ResultsClaimed, match=r"from /checkout/one with other settings \(train\.seed: 7 -> 0\)"):
        check_and_record(tmp_path, "/checkout/two", SETTINGS, "code-1", force_all=False)
    with pytest.raises(ResultsClaimed, match=r"other settings \(the workflow's code\)"):
        check_and_record(tmp_path, "/checkout/two", seed_7, "code-2", force_all=False)
    moved = {**seed_7, "resources": {"train": {"mem_mb": 2}}}  # where jobs run decides no output
    check_and_record(tmp_path, "/checkout/two", moved, "code-1", force_all=False)
    check_and_record(tmp_path, "/checkout/one", SETTINGS, "code-1", force_all=True)  # --forceall


def test_forceall_is_read_from_the_command_line_the_workflow_is_parsed_under() -> None:
    assert forceall_requested(["snakemake", "--cores", "2", "--forceall"])
    assert forceall_requested(["snakemake", "-nF"]) and forceall_requested(["snakemake", "-F", "all"])
    assert not forceall_requested(["snakemake", "--cores", "2", "-n", "--config", "results=/F/x", "-R", "train"])


def checkout_copy(folder: Path) -> Path:
    """A second checkout of the workflow: its rules, scripts and config, in another folder."""
    folder.mkdir()
    for part in ("workflow", "scripts", "config", "environment.yml"):
        source = REPO / part
        if source.is_dir():
            subprocess.run(["cp", "-r", str(source), str(folder / part)], check=True)
        else:
            (folder / part).write_bytes(source.read_bytes())
    return folder


@pytest.mark.workflow
def test_two_checkouts_one_results_folder(tmp_path: Path) -> None:
    other = checkout_copy(tmp_path / "other-checkout")
    results = tmp_path / "results"
    target = str(results / "classes/labels.parquet")

    def snakemake(cwd: Path, *config: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        tiny = str(REPO / ".test/config/config.yaml")
        command = [sys.executable, "-m", "snakemake", "--cores", "2", target, *extra,
                   "--configfile", tiny, "--config", f"results={results}", *config]  # fmt: skip
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)

    first = snakemake(REPO)
    assert first.returncode == 0, first.stderr
    labels = (results / "classes/labels.parquet").read_bytes()
    later = snakemake(other, "split={valid_fraction: 0.2, seed: 7}")
    assert later.returncode != 0 and "Nothing to be done" not in later.stdout + later.stderr
    assert f"was made by a run from {REPO.resolve()} with other settings (split.seed: 256 -> 7)" in later.stderr
    assert (results / "classes/labels.parquet").read_bytes() == labels
    handle = lock_results(results, "/checkout/three")  # a run in progress elsewhere
    try:
        started = time.time()
        during = snakemake(other, "split={valid_fraction: 0.2, seed: 7}", extra=("--forceall",))
        assert during.returncode != 0 and "is being written by another run" in during.stderr
        assert "from /checkout/three" in during.stderr and time.time() - started < 300
    finally:
        handle.close()
    assert (results / "classes/labels.parquet").read_bytes() == labels
    forced = snakemake(other, "split={valid_fraction: 0.2, seed: 7}", extra=("--forceall",))
    assert forced.returncode == 0, forced.stderr
    assert (results / "classes/labels.parquet").read_bytes() != labels  # the new split
