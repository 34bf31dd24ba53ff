"""A job stopped with SIGTERM leaves neither its output nor a temporary file behind; every job logs its peak memory."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from helpers import REPO
from saliency_audit.runtime.atomic_io import write_json
from saliency_audit.runtime.job import read_peak_memory

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {scripts!r})
    from saliency_audit.runtime.atomic_io import atomic_path
    from saliency_audit.runtime.job import start_job
    start_job({log!r})
    with atomic_path({out!r}) as tmp:
        tmp.write_text("half of it")
        print("writing", file=sys.stderr)
        os.kill(os.getpid(), signal.SIGTERM)
        tmp.write_text("all of it")
    """
)


def test_sigterm_mid_write_removes_the_temporary_file(tmp_path: Path) -> None:
    out, log = tmp_path / "out.txt", tmp_path / "job.log"
    child = CHILD.format(scripts=str(REPO / "scripts"), log=str(log), out=str(out))
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert done.returncode == 128 + 15
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.log"]
    assert log.read_text().splitlines()[0] == "writing"
    assert read_peak_memory(log) is not None, "a stopped job still logs its peak memory"


POOL = textwrap.dedent(
    """
    import signal, sys
    from multiprocessing import get_context
    sys.path.insert(0, {scripts!r})
    from saliency_audit.runtime.job import start_job, worker_defaults
    def handler(_):
        return signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    start_job({log!r})
    with get_context("fork").Pool(2, initializer=worker_defaults) as pool:
        print(pool.map(handler, range(4)))
    """
)


def test_pool_workers_die_on_sigterm_instead_of_unwinding(tmp_path: Path) -> None:
    """Pool.terminate() SIGTERMs its workers: they must not inherit the job's raising handler."""
    child = POOL.format(scripts=str(REPO / "scripts"), log=str(tmp_path / "job.log"))
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[True, True, True, True]"


PEAK = textwrap.dedent(
    """
    import sys
    import numpy as np
    sys.path.insert(0, {scripts!r})
    from saliency_audit.runtime.job import start_job
    start_job({log!r})
    block = np.ones({mb} * 2**20, dtype=np.uint8)  # touched, so resident
    del block
    """
)


def test_the_log_ends_with_the_true_peak_memory_even_after_it_was_freed(tmp_path: Path) -> None:
    peaks = {}
    for mb in (0, 400):
        log = tmp_path / f"{mb}.log"
        child = PEAK.format(scripts=str(REPO / "scripts"), log=str(log), mb=mb)
        subprocess.run([sys.executable, "-c", child], check=True, timeout=60)
        peaks[mb] = read_peak_memory(log)
    assert peaks[400] - peaks[0] >= 390, peaks


def test_json_outputs_are_strict_json(tmp_path: Path) -> None:
    out = tmp_path / "scores.json"
    write_json({"auroc": float("nan"), "rates": [0.5, float("inf")], "n": 3}, out)
    text = out.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"auroc": None, "rates": [0.5, None], "n": 3}
