"""The object regions of every image, found once by the ``regions`` rule and read by every stage
that needs them (probes, saliency statistics, galleries, backgrounds).

Shard ``i``'s regions are ``regions/part-<i>.npy``: an N x 2 x S x ceil(S/8) uint8 array whose
row ``r`` holds the packed bits (``np.packbits`` along x) of the object region and of the other
sources (``segments`` only; all zero otherwise) of row ``r`` of ``images/part-<i>.npy``. The
parts in shard order therefore line up with the gathered ``images/images.npy``. The images left
without a region are listed in ``regions/problems-<i>.csv`` (id, problem, detail), with an
empty object. At 64 px a row is 1 KB: an eighth of its packed image.

Finding a region costs from a mask file's decode to a deblended segmentation (about 9 ms an
image, twelve times the audit): found once, it is paid once, not by each of four stages.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from saliency_audit.data.image_io import open_packed, read_rows, uint8_writer
from saliency_audit.data.regions import Problem, image_sizes, regions_and_neighbours
from saliency_audit.runtime.atomic_io import atomic_path, write_csv
from saliency_audit.runtime.shards import shard_labels

PROBLEM_COLUMNS = ["id", "problem", "detail"]


def pack_masks(objects: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """B x S x S object and neighbour masks -> B x 2 x S x ceil(S/8) packed bits."""
    return np.packbits(np.stack([objects, neighbours], axis=1), axis=-1)


def unpack_masks(bits: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """B x 2 x S x ceil(S/8) packed bits -> (objects, neighbours), B x S x S boolean each."""
    masks = np.unpackbits(bits, axis=-1, count=size).astype(bool)
    return masks[:, 0], masks[:, 1]


def write_regions(
    images: np.ndarray,
    ids: Sequence[str],
    catalog: pd.DataFrame,
    spec: dict[str, Any],
    max_pixels: int,
    out: str | os.PathLike,
    batch_size: int = 256,
) -> pd.DataFrame:
    """Find the regions of the packed ``images`` (row ``r`` is ``ids[r]``; ``catalog`` is the clean catalog
    indexed by id) with ``spec`` (saliency.object) and write their bits to ``out``; return the problems."""
    n, size = len(images), images.shape[1]
    if len(ids) != n:
        raise ValueError(f"{n} images but {len(ids)} ids")
    problems: list[tuple[str, str, str]] = []
    with uint8_writer(out, (n, 2, size, (size + 7) // 8)) as write:
        for start in tqdm(range(0, n, batch_size), desc="regions", unit="batch", mininterval=2.0):
            batch_ids = [str(i) for i in ids[start : start + batch_size]]
            pixels = read_rows(images, np.arange(start, start + len(batch_ids)))
            objects, neighbours, bad = regions_and_neighbours(
                spec, batch_ids, pixels, catalog, image_sizes(catalog, batch_ids), max_pixels
            )
            write(pack_masks(objects, neighbours))
            problems += [(batch_ids[position], problem, detail) for position, problem, detail in bad]
    return pd.DataFrame(problems, columns=PROBLEM_COLUMNS)


def run_regions(
    images: str | os.PathLike,
    labels: str | os.PathLike,
    clean: str | os.PathLike,
    shard: tuple[int, int],
    spec: dict[str, Any],
    max_pixels: int,
    out: tuple[str | os.PathLike, str | os.PathLike],
) -> str:
    """The ``regions`` rule: the regions of packed part ``images``, shard ``shard`` = (index, count) of the
    ``labels``, written to ``out`` = (bits, problems); returns the log line."""
    packed = open_packed(images)
    rows = shard_labels(pd.read_parquet(labels), len(packed), shard[1], shard[0], images, labels)
    catalog = pd.read_parquet(clean).set_index("id")
    with atomic_path(out[0]) as tmp:
        problems = write_regions(packed, rows["id"].astype(str).tolist(), catalog, spec, max_pixels, tmp)
    write_csv(problems, out[1])
    counts = problems["problem"].value_counts().to_dict()
    return f"regions of {len(rows)} images in shard {shard[0]}; without a region: {counts}"


@dataclass(frozen=True)
class RegionStore:
    """The regions parts of a run, read by row of the gathered images (or of one part, opened alone)."""

    parts: list[np.ndarray]  # memory maps, N_i x 2 x S x ceil(S/8)
    starts: np.ndarray  # the first row of each part
    problems: pd.DataFrame  # id, problem, detail; indexed by id
    size: int

    @classmethod
    def open(
        cls, parts: Sequence[str | os.PathLike], problems: Sequence[str | os.PathLike], rows: int | None = None
    ) -> "RegionStore":
        """Open the parts in shard order; ``rows``, when given, is how many images they must cover (regions
        found for other images would pair masks with the wrong ids)."""
        arrays = [np.load(part, mmap_mode="r") for part in parts]
        for path, array in zip(parts, arrays):
            if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1] != 2:
                raise ValueError(f"{path} holds a {array.dtype} array of shape {array.shape}, not regions: "
                                 "delete it to find the regions again")  # fmt: skip
        listed = [pd.read_csv(path, dtype=str, keep_default_na=False) for path in problems]
        table = pd.concat(listed, ignore_index=True) if listed else pd.DataFrame(columns=PROBLEM_COLUMNS)
        starts = np.cumsum([0] + [len(array) for array in arrays])[:-1]
        if rows is not None and sum(len(array) for array in arrays) != rows:
            names = ", ".join(str(part) for part in parts)
            raise ValueError(f"{names} hold the regions of {sum(len(a) for a in arrays)} images, not of the {rows} "
                             "images they must cover: delete them to find the regions again")  # fmt: skip
        return cls(arrays, starts, table.set_index("id"), int(arrays[0].shape[2]) if arrays else 0)

    def __len__(self) -> int:
        return int(sum(len(part) for part in self.parts))

    def read(self, rows: np.ndarray, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[Problem]]:
        """The object and neighbour masks of ``rows`` (whose ids are ``ids``), and the problems of those
        without a region as (position, problem, detail), as ``regions_and_neighbours`` returns them."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) != len(ids):
            raise ValueError(f"{len(rows)} rows but {len(ids)} ids")
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise ValueError(f"row {int(rows.max())} is beyond the {len(self)} rows of the regions: find them again")
        which = np.searchsorted(self.starts, rows, side="right") - 1
        bits = np.empty((len(rows), *self.parts[0].shape[1:]) if self.parts else (0,), dtype=np.uint8)
        for k in np.unique(which):
            picked = np.flatnonzero(which == k)
            bits[picked] = read_rows(self.parts[k], rows[picked] - self.starts[k])
        objects, neighbours = unpack_masks(bits, self.size)
        listed = self.problems.index
        problems = [
            (position, str(self.problems.at[image_id, "problem"]), str(self.problems.at[image_id, "detail"]))
            for position, image_id in enumerate(ids)
            if image_id in listed
        ]
        return objects, neighbours, problems

    def problem_table(self) -> pd.DataFrame:
        """Every image without a region: id, problem, detail."""
        return self.problems.reset_index()[PROBLEM_COLUMNS]
