"""One results folder, one writer, and the settings that made it.

Snakemake keeps its lock and what it knows of earlier runs (which settings and code made each
output) in the working directory's ``.snakemake``, not beside the outputs. Two checkouts writing
one results folder therefore see neither each other nor each other's settings: a second run
started during the first would skip training because a model exists, and a later run with
another ``train.seed`` would find nothing to do. So a run that is about to execute jobs

- takes an exclusive lock on ``<results>/.saliency-audit.lock`` (``flock``: released by the
  kernel when the run ends or dies, never left behind) and writes who holds it into the file;
  a second run, from any checkout, is refused with the holder's host, process and folder;
- records its working directory, settings and code in ``<results>/.saliency-audit-run.json``;
  a run from another working directory whose settings or code differ is refused, since
  Snakemake there cannot tell which outputs they change. ``--forceall`` (everything computed
  again) is always allowed.
"""

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import IO, Any

from saliency_audit.runtime.atomic_io import atomic_path
from saliency_audit.runtime.settings import flatten

LOCK_NAME = ".saliency-audit.lock"
RECORD_NAME = ".saliency-audit-run.json"
SHOWN_CHANGES = 5
# where jobs run and whether earlier outputs are reused: no output depends on these
NEUTRAL_KEYS = ("resources", "reuse", "report_facts")


class ResultsClaimed(RuntimeError):
    """The results folder is written by another run, or was made with settings this run cannot follow."""


def _describe(holder: dict[str, Any]) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return (
        f"process {holder.get('pid', '?')} on {holder.get('host', '?')}, started {started} "
        f"from {holder.get('workdir', '?')}"
    )


def forceall_requested(argv: list[str]) -> bool:
    """Whether a Snakemake command line asks to compute everything again (``--forceall``, ``-F``, ``-nF``):
    the workflow is parsed before Snakemake hands it the DAG settings."""
    return any(arg == "--forceall" or (arg[:1] == "-" and arg[1:2] != "-" and arg[1:].isalpha() and "F" in arg)
               for arg in argv)  # fmt: skip


def lock_results(results: str | os.PathLike, workdir: str) -> IO[str]:
    """Hold the results folder's lock for as long as the returned file stays open; refuse when another
    run holds it, naming that run."""
    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    handle = open(results / LOCK_NAME, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        try:
            holder = json.loads(handle.read())
        except ValueError:
            holder = {}
        handle.close()
        raise ResultsClaimed(
            f"{results} is being written by another run ({_describe(holder)}); two runs writing one results "
            "folder would mix their outputs. Wait for it to finish, or choose another folder (--config results=...)."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "workdir": workdir,
                             "started": time.time()}))  # fmt: skip
    handle.flush()
    return handle


def settings_changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every setting that differs between two runs' settings."""
    old, new = dict(flatten(recorded)), dict(flatten(current))
    return [f"{key}: {old.get(key, '(unset)')} -> {new.get(key, '(unset)')}"
            for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]  # fmt: skip


def _record(results: str | os.PathLike, workdir: str, settings: dict[str, Any], code: str) -> dict[str, Any]:
    deciding = {key: value for key, value in settings.items() if key not in NEUTRAL_KEYS}
    return {"workdir": workdir, "settings": json.loads(json.dumps(deciding, default=str)), "code": code}


def check_settings(
    results: str | os.PathLike, workdir: str, settings: dict[str, Any], code: str, force_all: bool
) -> None:
    """Refuse a run from another working directory whose settings or code differ from those of the run
    that made the results, unless it computes everything again."""
    current = _record(results, workdir, settings, code)
    try:
        previous = json.loads((Path(results) / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return
    if not isinstance(previous, dict) or previous.get("workdir") == workdir or force_all:
        return
    changes = settings_changes(previous.get("settings", {}), current["settings"])
    if previous.get("code") != code:
        changes.append("the workflow's code")
    if changes:
        shown = "; ".join(changes[:SHOWN_CHANGES]) + (
            f"; and {len(changes) - SHOWN_CHANGES} more" if len(changes) > SHOWN_CHANGES else ""
        )
        raise ResultsClaimed(
            f"{results} was made by a run from {previous.get('workdir')} with other settings ({shown}). "
            "Snakemake records which settings made each output in the working directory's .snakemake "
            "folder, so a run from here cannot tell which outputs these changes affect and would keep "
            f"outputs made with the old settings. Run from {previous.get('workdir')}, or choose another "
            "results folder (--config results=...), or compute everything again here with --forceall."
        )


def check_and_record(
    results: str | os.PathLike, workdir: str, settings: dict[str, Any], code: str, force_all: bool
) -> None:
    """``check_settings``, then record this run's working directory, settings and code as the results'."""
    check_settings(results, workdir, settings, code, force_all)
    with atomic_path(Path(results) / RECORD_NAME) as tmp:
        tmp.write_text(json.dumps(_record(results, workdir, settings, code), indent=1))
