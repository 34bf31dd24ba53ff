"""Write-then-rename for every output, so a killed job never leaves a valid-looking partial file."""

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; it replaces ``path`` only if the block succeeds.

    The temporary name keeps the suffix, because writers such as ``np.save`` or
    ``savefig`` choose the format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_parquet(frame: pd.DataFrame, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """``frame`` without its index; ``metadata`` joins the file's schema metadata (pandas' own is kept)."""
    with atomic_path(path) as tmp:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if metadata:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
        pq.write_table(table, tmp)


def json_safe(data: Any) -> Any:
    """``data`` with every NaN or infinite float as ``None``: JSON has no NaN, and strict readers
    (``jq``, JavaScript's ``JSON.parse``) reject the ``NaN`` that Python writes by default."""
    if isinstance(data, dict):
        return {key: json_safe(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(value) for value in data]
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


def write_json(data: Any, path: str | os.PathLike) -> None:
    """Strict JSON (an undefined score is ``null``), written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(json_safe(data), indent=2, sort_keys=True, allow_nan=False) + "\n")
