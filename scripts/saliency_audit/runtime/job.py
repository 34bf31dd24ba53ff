"""What every rule script does first: log to the rule's log file, and stop cleanly when killed."""

import atexit
import os
import re
import resource
import signal
import sys
from pathlib import Path

PEAK_LINE = "peak memory {:.0f} MB"
PEAK_PATTERN = re.compile(r"^peak memory (\d+) MB$", re.MULTILINE)


def start_job(log_path: str | os.PathLike) -> None:
    """Send stderr (messages, progress bars) to the rule's log, and turn SIGTERM into SystemExit.

    Slurm, a killed Snakemake or a shutdown stop a job with SIGTERM. Python's default is to
    die on the spot; as an exception it unwinds through the ``finally`` blocks instead, so
    ``atomic_path`` removes its temporary file and nothing half-written stays behind.
    The log's last line is the job's peak memory, what a user needs to set ``mem_mb``.
    """
    sys.stderr = open(log_path, "w", buffering=1)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    atexit.register(lambda: print(PEAK_LINE.format(peak_memory_mb()), file=sys.stderr))


def worker_defaults() -> None:
    """A process pool's initializer: the default SIGTERM action in each worker.

    Forked workers inherit ``start_job``'s handler, which raises SystemExit; ``Pool.terminate()``
    then makes a worker unwind instead of die, and a pool could hang at its end under load.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def peak_memory_mb() -> float:
    """The kernel's high-water mark of this process's resident memory (MB).

    Unlike Snakemake's ``benchmark:`` max_rss, which samples every 0.5 s and, after the first
    30 s, every 30 s, this is the true peak, however short the job or brief the peak. It is
    read from /proc (``VmHWM``) because ``ru_maxrss`` also counts the memory of the process
    that started the job (Linux carries it across fork and exec), here Snakemake itself.
    """
    status = Path("/proc/self/status")
    if status.exists():
        found = re.search(r"^VmHWM:\s+(\d+) kB$", status.read_text(), re.MULTILINE)
        if found:
            return int(found.group(1)) / 2**10
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)


def read_peak_memory(log_path: str | os.PathLike) -> float | None:
    """The peak memory (MB) a finished job wrote at the end of its log; None if it wrote none."""
    found = PEAK_PATTERN.findall(Path(log_path).read_text())
    return float(found[-1]) if found else None
