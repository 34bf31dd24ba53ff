"""What every rule script does first: log to the rule's log file, and stop cleanly when killed."""

import os
import signal
import sys


def start_job(log_path: str | os.PathLike) -> None:
    """Send stderr (messages, progress bars) to the rule's log, and turn SIGTERM into SystemExit.

    Slurm, a killed Snakemake or a shutdown stop a job with SIGTERM. Python's default is to
    die on the spot; as an exception it unwinds through the ``finally`` blocks instead, so
    ``atomic_path`` removes its temporary file and nothing half-written stays behind.
    """
    sys.stderr = open(log_path, "w", buffering=1)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
