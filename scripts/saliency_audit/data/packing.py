"""Packing (rules ``pack_images`` and ``gather_images``): decode every kept image once into
memory-mappable uint8 arrays.

Packing is scattered like the audit: job ``i`` decodes the rows of
``shard_rows(N, audit.shards, i)`` into ``images/part-<i>.npy``, which audit shard
``i`` reads. ``gather_images`` concatenates the parts into ``images.npy``
(N x S x S x 3, rows in the order of ``index.parquet``) for training, evaluation
and the figures, so no stage decodes JPEGs again.
"""

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from tqdm import tqdm

from saliency_audit.data.image_io import center_crop_pad, load_rgb, open_packed, packed_writer, read_rows
from saliency_audit.runtime.atomic_io import atomic_path
from saliency_audit.runtime.shards import shard_rows


def shard_paths(labels: str | os.PathLike, clean: str | os.PathLike, shards: int, shard: int) -> list[str]:
    """The image files of shard ``shard`` of ``shards``: its rows of the labels table (the kept
    images, in the order of ``index.parquet``), looked up in the clean catalog."""
    ids = pd.read_parquet(labels, columns=["id"])
    images = pd.read_parquet(clean, columns=["id", "image"])
    rows = shard_rows(len(ids), shards, shard)
    return ids.iloc[rows].merge(images, on="id", how="left", validate="one_to_one")["image"].tolist()


def pack(
    paths: list[str], size: int, out: str | os.PathLike, max_pixels: int, workers: int = 1, chunk: int = 512
) -> None:
    """Write the centre-cropped/padded RGB images of ``paths`` to ``out`` as one .npy array.

    Images are decoded in threads, a chunk at a time, so memory stays bounded by
    the chunk whatever the number of images.
    """

    def decode(path: str) -> np.ndarray:
        return center_crop_pad(load_rgb(path, max_pixels), size)

    with (
        atomic_path(out) as tmp,
        packed_writer(tmp, len(paths), size) as write,
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        tqdm(total=len(paths), desc="pack", unit="image", mininterval=2.0) as progress,
    ):
        for start in range(0, len(paths), chunk):
            batch = paths[start : start + chunk]
            write(np.stack(list(pool.map(decode, batch))))
            progress.update(len(batch))


def concatenate(parts: Sequence[str | os.PathLike], out: str | os.PathLike, rows: int, chunk: int = 4096) -> None:
    """Stack the packed ``parts`` row-wise into ``out``, a chunk at a time, after checking that
    they hold ``rows`` images of one shape between them."""
    arrays = [open_packed(part) for part in parts]
    shapes = {array.shape[1:] for array in arrays}
    if len(shapes) != 1:
        raise ValueError(f"the packed parts have different image shapes {sorted(shapes)}: {list(map(str, parts))}")
    total = sum(len(array) for array in arrays)
    if total != rows:
        raise ValueError(f"the packed parts hold {total} images, not {rows}: delete them so that they are packed again")
    with (
        atomic_path(out) as tmp,
        packed_writer(tmp, total, shapes.pop()[0]) as write,
        tqdm(total=total, desc="gather", unit="image", mininterval=2.0) as progress,
    ):
        for array in arrays:
            for first in range(0, len(array), chunk):
                block = read_rows(array, np.arange(first, min(first + chunk, len(array))))
                write(block)
                progress.update(len(block))


def read_ids(labels: str | os.PathLike) -> pd.Series:
    """The ids of the kept images in the labels table's order, which is the order of the packed rows."""
    return pd.read_parquet(labels, columns=["id"])["id"]


def row_index(ids: pd.Series) -> pd.DataFrame:
    """The table that names the rows of ``images.npy``: row number and id."""
    return pd.DataFrame({"row": np.arange(len(ids)), "id": ids})
