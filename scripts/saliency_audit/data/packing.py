"""Packing (rules ``pack_images`` and ``gather_images``): decode every kept image once into
memory-mappable uint8 arrays.

Packing is scattered like the audit: job ``i`` decodes the rows of
``shard_rows(N, audit.shards, i)`` into ``images/part-<i>.npy``, which audit shard
``i`` reads. ``gather_images`` concatenates the parts into ``images.npy``
(N x S x S x 3, rows in the order of ``index.parquet``) for training, evaluation
and the figures, so no stage decodes JPEGs again.
"""

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from saliency_audit.data.image_io import (
    Decoding,
    center_crop_pad,
    load_image,
    open_packed,
    packed_writer,
    read_rows,
)
from saliency_audit.runtime.atomic_io import atomic_path
from saliency_audit.runtime.checksums import forget_sha256, record_sha256
from saliency_audit.runtime.shards import shard_rows


def shard_paths(labels: str | os.PathLike, clean: str | os.PathLike, shards: int, shard: int) -> list[str]:
    """The image files of shard ``shard`` of ``shards``: its rows of the labels table (the kept
    images, in the order of ``index.parquet``), looked up in the clean catalog."""
    ids = pd.read_parquet(labels, columns=["id"])
    images = pd.read_parquet(clean, columns=["id", "image"])
    rows = shard_rows(len(ids), shards, shard)
    return ids.iloc[rows].merge(images, on="id", how="left", validate="one_to_one")["image"].tolist()


def pack(
    paths: list[str],
    size: int,
    out: str | os.PathLike,
    max_pixels: int,
    workers: int = 1,
    chunk: int = 512,
    decoding: Decoding | None = None,
) -> None:
    """Write the centre-cropped/padded images of ``paths`` to ``out`` as one .npy array (deep images
    scaled by ``decoding``, as validation read them).

    Images are decoded in threads, a chunk at a time, so memory stays bounded by
    the chunk whatever the number of images.
    """

    def decode(path: str) -> np.ndarray:
        return center_crop_pad(load_image(path, max_pixels, decoding), size)

    forget_sha256(out)
    with (
        atomic_path(out) as tmp,
        packed_writer(tmp, len(paths), size, 3 if decoding is None else decoding.channels) as write,
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        tqdm(total=len(paths), desc="pack", unit="image", mininterval=2.0) as progress,
    ):
        for start in range(0, len(paths), chunk):
            batch = paths[start : start + chunk]
            write(np.stack(list(pool.map(decode, batch))))
            progress.update(len(batch))
    record_sha256(out)  # the jobs that read the pixels check them against this


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
    forget_sha256(out)
    with (
        atomic_path(out) as tmp,
        packed_writer(tmp, total, *shapes.pop()[1:]) as write,
        tqdm(total=total, desc="gather", unit="image", mininterval=2.0) as progress,
    ):
        for array in arrays:
            for first in range(0, len(array), chunk):
                block = read_rows(array, np.arange(first, min(first + chunk, len(array))))
                write(block)
                progress.update(len(block))
    record_sha256(out)


def read_ids(labels: str | os.PathLike) -> pd.Series:
    """The ids of the kept images in the labels table's order, which is the order of the packed rows."""
    return pd.read_parquet(labels, columns=["id"])["id"]


@dataclass(frozen=True)
class PackedIndex:
    """Which row of ``images.npy`` holds each image: the one id -> packed-row mapping.

    gather_images writes it (``images/index.parquet``: row, id, in the labels' order) and every
    stage that reads pixels by id looks them up here.
    """

    ids: pd.Index  # ids as text; position = packed row

    @classmethod
    def from_ids(cls, ids: Iterable[str]) -> "PackedIndex":
        index = pd.Index([str(i) for i in ids], dtype=object)
        if not index.is_unique:
            raise ValueError(f"packed ids must be unique; {index[index.duplicated()][0]!r} repeats")
        return cls(index)

    @classmethod
    def read(cls, path: str | os.PathLike) -> "PackedIndex":
        table = pd.read_parquet(path)
        if not (table["row"].to_numpy() == np.arange(len(table))).all():
            raise ValueError(f"{path}: rows are not 0..{len(table) - 1} in order; delete it to gather again")
        return cls.from_ids(table["id"].astype(str))

    def __len__(self) -> int:
        return len(self.ids)

    def table(self) -> pd.DataFrame:
        """index.parquet's content: row number and id."""
        return pd.DataFrame({"row": np.arange(len(self.ids)), "id": self.ids.to_numpy()})

    def rows(self, ids: Iterable[str]) -> np.ndarray:
        """The packed rows of ``ids``, in their order; KeyError names an id that was not packed."""
        wanted = pd.Index([str(i) for i in ids], dtype=object)
        rows = self.ids.get_indexer(wanted)
        if (rows < 0).any():
            raise KeyError(f"image {wanted[rows < 0][0]!r} is not in the packed images")
        return rows

    def shard(self, shard: int, shards: int) -> np.ndarray:
        """The packed rows of shard ``shard`` of ``shards`` (contiguous blocks, as packing and the audit cut them)."""
        return shard_rows(len(self.ids), shards, shard)


def row_index(ids: pd.Series) -> pd.DataFrame:
    """The table that names the rows of ``images.npy``: row number and id."""
    return PackedIndex.from_ids(ids).table()
