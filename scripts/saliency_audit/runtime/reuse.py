"""Reuse a job's previous outputs when the content of everything it reads is unchanged.

Snakemake decides what to rerun from file times, and reruns every job downstream of one
that reruns: a column added to the catalog, or a deleted ``images.npy`` that is gathered
again with the same pixels, would retrain the model and redo the audit. The expensive
jobs (training, evaluation, the audit) therefore compute a key from the *content* of
what they use (the labels and split, the pixels' checksum, the model's checksum, their
settings and the workflow's code) and, when an earlier run with the same key left its
outputs, restore those instead of computing them again.

Each output keeps a hidden hard link to its last complete version next to it
(``.<name>.previous``, no extra disk while the output exists) with the key and the
content checksum (``.<name>.previous.json``). A restore checks that checksum first, so
a file damaged on disk is computed again, never restored. Every output written or restored
here has its checksum recorded (``checksums.record_sha256``), and the keys of the jobs that
read it check its content against that record.
"""

import hashlib
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from saliency_audit.runtime.atomic_io import atomic_path
from saliency_audit.runtime.checksums import file_sha256, forget_sha256, record_sha256, verified_sha256

# scripts/: the library package and the rule scripts beside it
CODE = Path(__file__).resolve().parents[2]


def _hidden(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.name}{suffix}")


def code_digest() -> str:
    """SHA-256 of the workflow's Python code, every module of the package and every rule script by its
    path under scripts/: a change to any of them computes everything again."""
    digest = hashlib.sha256()
    for source in sorted(CODE.rglob("*.py")):
        if "__pycache__" not in source.parts:
            digest.update(source.relative_to(CODE).as_posix().encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def frame_digest(frame: pd.DataFrame) -> str:
    """SHA-256 of a table's columns, values and row order."""
    digest = hashlib.sha256(json.dumps([str(c) for c in frame.columns]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def fingerprint(
    files: Iterable[str | os.PathLike] = (), tables: Iterable[pd.DataFrame] = (), values: Any = None
) -> str:
    """The reuse key of a job: the content of ``files`` (checked against their records) and ``tables``,
    ``values`` (JSON) and the code."""
    parts = {
        "files": [verified_sha256(path) for path in files],
        "tables": [frame_digest(table) for table in tables],
        "values": values,
        "code": code_digest(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _restore(outputs: list[Path], key: str) -> bool:
    records = []
    for output in outputs:
        previous, record = _hidden(output, ".previous"), _hidden(output, ".previous.json")
        try:
            stored = json.loads(record.read_text())
        except (OSError, ValueError):
            return False
        if stored.get("key") != key or not previous.is_file() or file_sha256(previous) != stored.get("sha256"):
            return False
        records.append((previous, stored["sha256"]))
    for output, (previous, digest) in zip(outputs, records):
        output.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(output) as tmp:
            os.link(previous, tmp)
        os.utime(output)  # newer than the inputs, as if just computed
        record_sha256(output, digest)
    return True


def _store(outputs: list[Path], key: str, digests: list[str]) -> None:
    for output, digest in zip(outputs, digests):
        previous, record = _hidden(output, ".previous"), _hidden(output, ".previous.json")
        try:
            with atomic_path(previous) as tmp:
                os.link(output, tmp)
        except OSError as error:  # no hard links on this file system: nothing to reuse next time
            print(f"cannot keep {output} for reuse ({error.strerror})", file=sys.stderr)
            record.unlink(missing_ok=True)
            continue
        with atomic_path(record) as tmp:
            tmp.write_text(json.dumps({"key": key, "sha256": digest}))


def job_key(snakemake: Any, files: Iterable[str | os.PathLike], tables: Iterable[pd.DataFrame] = ()) -> str:
    """``fingerprint`` of a rule job: ``files``, ``tables`` and every param of the rule but ``reuse``."""
    values = {name: value for name, value in snakemake.params.items() if name != "reuse"}
    return fingerprint(files, tables, values)


@contextmanager
def reusable(outputs: Sequence[str | os.PathLike], key: str, enabled: bool = True) -> Iterator[bool]:
    """Yield True when the outputs of an earlier run with ``key`` were restored (the job's work is
    done); otherwise yield False, and once the block has written the outputs, record their checksums
    and keep them for reuse.

    ``enabled=False`` (config ``reuse: false``) always computes, and keeps nothing for reuse.
    """
    paths = [Path(output) for output in outputs]
    if enabled and _restore(paths, key):
        print(f"inputs, settings and code unchanged (key {key[:12]}): reused the outputs of an earlier run",
              file=sys.stderr)  # fmt: skip
        yield True
        return
    for path in paths:
        forget_sha256(path)
    yield False
    digests = [record_sha256(path) for path in paths]
    if enabled:
        _store(paths, key, digests)
