"""The row blocks of the scattered stages: packing, the audit and the probes split the images the
same way, so shard ``i`` reads exactly the packed part ``i``."""

import os

import numpy as np
import pandas as pd


def shard_rows(n_images: int, shards: int, shard: int) -> np.ndarray:
    """Contiguous, nearly equal blocks of rows: shard ``shard`` of ``shards``."""
    return np.array_split(np.arange(n_images), shards)[shard]


def shard_labels(
    labels: pd.DataFrame, n_packed: int, shards: int, shard: int, packed: str | os.PathLike, source: str | os.PathLike
) -> pd.DataFrame:
    """The rows of ``labels`` that packed part ``packed`` (``n_packed`` images) holds, renumbered from 0.

    A part of another length (packed for another split, or damaged) would pair images with the wrong
    ids, so it is an error that names the file to delete.
    """
    rows = shard_rows(len(labels), shards, shard)
    if n_packed != len(rows):
        raise ValueError(
            f"{packed} holds {n_packed} images, but shard {shard} of {shards} covers {len(rows)} rows of "
            f"{source}; delete it so that it is packed again"
        )
    return labels.iloc[rows].reset_index(drop=True)
