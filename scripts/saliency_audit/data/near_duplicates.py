"""Near-duplicate images (rule ``near_duplicates``): pairs of kept images that are one picture up to
noise, re-compression, a flip or a quarter turn; the copies that leak from the training split into
the validation split and inflate its accuracy.

Each image is described by its grey level (the mean of its bands) box-averaged to 32 x 32, minus its
mean, scaled to unit length. The distance of two images is the smallest Euclidean distance between
the first's descriptor and the second's under the eight flips and quarter turns: 0 for copies,
``sqrt(2 (1 - r))`` for thumbnails of correlation ``r``, 2 at most. Descriptors are computed in
float64 and stored in float32; distances up to ``ROUNDING`` above the threshold count as within it,
so that a flipped colour copy, whose box sums round differently, is found even at threshold 0. A
descriptor of a blank image is zero and gets no pair (validation already reports such images).

The search checks only a small share of the pairs (locality-sensitive hashing for Euclidean
distance, Datar et al. 2004). A table cuts the descriptors' space along ``HASHES`` random directions
into slabs ``4 x threshold`` wide at random offsets; two descriptors ``c`` apart share a slab of one
direction with a probability that falls with ``c`` alone, so pairs within the threshold share all
slabs of one of ``TABLES`` tables far more often than other pairs. Every image is looked up in its
eight orientations; every pair found so is checked at its full distance. A pair at the threshold is
found with probability 0.995, a closer one more surely (copies always); unrelated images at a
typical distance of 0.9 share a table with probability 1e-6 per orientation, so the pairs checked
grow as a small fraction of N^2 and a million images stay within reach of one machine.
"""

import os
from collections.abc import Iterator

import numpy as np
import pandas as pd
from tqdm import tqdm

from saliency_audit.data.image_io import open_packed, read_rows

DESCRIPTOR_SIZE = 32  # px of the grey thumbnail compared
TABLES = 48  # hash tables
HASHES = 10  # random directions per table: a pair must share the slab of all of them to be checked
WIDTH = 4.0  # slab width in thresholds: a pair at the threshold shares one slab with probability 0.80
ROUNDING = 1e-5  # distance that float32 descriptors of one picture can differ by
COLUMNS = ["id_a", "id_b", "split_a", "split_b", "distance"]


def _box_average(grey: np.ndarray, size: int) -> np.ndarray:
    """``grey`` (B x S x S) averaged over ``size`` x ``size`` boxes of (nearly) equal area."""
    edges = np.linspace(0, grey.shape[1], size + 1).round().astype(int)
    rows = np.add.reduceat(grey, edges[:-1], axis=1) / np.diff(edges)[None, :, None]
    return np.add.reduceat(rows, edges[:-1], axis=2) / np.diff(edges)[None, None, :]


def descriptors(images: np.ndarray, chunk: int = 1024, progress: bool = False) -> np.ndarray:
    """The unit-length 32 x 32 grey descriptors (N x 32 x 32, float32) of packed images
    (N x S x S x C uint8, a memory map is read a chunk at a time)."""
    n = len(images)
    if images.shape[1] < DESCRIPTOR_SIZE:
        raise ValueError(f"images of {images.shape[1]} px are smaller than the {DESCRIPTOR_SIZE} px descriptor")
    out = np.empty((n, DESCRIPTOR_SIZE, DESCRIPTOR_SIZE), dtype=np.float32)
    starts = range(0, n, chunk)
    for start in tqdm(starts, desc="describe", unit="chunk", disable=not progress, mininterval=2.0):
        block = read_rows(images, np.arange(start, min(start + chunk, n))).mean(axis=3, dtype=np.float64)
        small = _box_average(block, DESCRIPTOR_SIZE)
        small -= small.mean(axis=(1, 2), keepdims=True)
        norms = np.sqrt((small**2).sum(axis=(1, 2), keepdims=True))
        out[start : start + len(block)] = np.divide(small, norms, out=np.zeros_like(small), where=norms > 1e-9)
    return out


def orientations(described: np.ndarray) -> Iterator[np.ndarray]:
    """The eight flips and quarter turns of a stack of square descriptors (... x H x W)."""
    for turned in (described, np.swapaxes(described, -1, -2)):
        for rows in (turned, turned[..., ::-1, :]):
            yield rows
            yield rows[..., ::-1]


def _gaps(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The Euclidean distance of each row of ``x`` to the same row of ``y``: from the differences, not
    from |x|^2 + |y|^2 - 2xy, whose cancellation makes rows one rounding apart look 3e-4 apart."""
    difference = x - y
    return np.sqrt(np.einsum("ij,ij->i", difference, difference, dtype=np.float64))


def distances(described: np.ndarray, a: np.ndarray, b: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """The distance of each pair (``a[i]``, ``b[i]``): the least over the eight orientations of ``b``."""
    best = np.empty(len(a))
    for start in range(0, len(a), chunk):
        part = slice(start, start + chunk)
        first = described[a[part]].reshape(len(a[part]), -1)
        gaps = [_gaps(first, o.reshape(len(first), -1)) for o in orientations(described[b[part]])]
        best[part] = np.min(gaps, axis=0) if gaps else np.empty(0)
    return best


def _signatures(
    flat: np.ndarray, directions: np.ndarray, offsets: np.ndarray, width: float, chunk: int = 65536
) -> np.ndarray:
    """The slabs of ``TABLES`` x ``HASHES`` random ``directions`` that each row of ``flat`` falls in,
    mixed into one integer per table (N x TABLES), ``chunk`` rows at a time: the projections of a
    million rows at once would take 10 GB."""
    mixing = np.random.default_rng(1).integers(1, 2**62, HASHES, dtype=np.int64) | 1
    out = np.empty((len(flat), TABLES), dtype=np.int64)
    for start in range(0, len(flat), chunk):
        part = flat[start : start + chunk]
        slabs = np.floor((part @ directions.T + offsets) / width).astype(np.int64).reshape(len(part), TABLES, HASHES)
        out[start : start + len(part)] = (slabs * mixing).sum(axis=2)  # wraps around: collisions are ~2^-64
    return out


def near_pairs(
    described: np.ndarray, max_distance: float, chunk: int = 16384, seed: int = 0, progress: bool = False
) -> pd.DataFrame:
    """The pairs of rows (a < b) of ``described`` within ``max_distance`` (each such pair with
    probability >= 0.995 at the threshold, see the module): columns a, b, distance, sorted by
    a then b. Rows with a zero (blank) descriptor take part in no pair.

    The candidates of one table are checked ``chunk`` pairs at a time in the orientation that found
    them; the pairs kept are measured once, at the end, over all eight orientations."""
    flat = described.reshape(len(described), -1)
    width = WIDTH * max(max_distance, 0.01)
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((TABLES * HASHES, flat.shape[1])).astype(np.float32)
    offsets = rng.uniform(0.0, width, TABLES * HASHES).astype(np.float32)
    usable = np.flatnonzero(np.any(flat != 0, axis=1))  # a blank descriptor pairs with nothing
    index = _signatures(flat[usable], directions, offsets, width)
    indexed = [pd.DataFrame({"sig": index[:, table], "b": usable}) for table in range(TABLES)]
    found = [np.empty((0, 2), np.int64)]
    steps = tqdm(total=8 * TABLES, desc="near-duplicates", unit="table", disable=not progress, mininterval=2.0)
    for oriented in orientations(described):
        turned_all = np.ascontiguousarray(oriented.reshape(len(flat), -1))
        queries = _signatures(turned_all[usable], directions, offsets, width)
        for table in range(TABLES):
            asked = pd.DataFrame({"sig": queries[:, table], "a": usable})
            candidates = asked.merge(indexed[table], on="sig")[["a", "b"]].to_numpy()
            candidates = candidates[candidates[:, 0] != candidates[:, 1]]
            for start in range(0, len(candidates), chunk):
                a, b = candidates[start : start + chunk].T
                close = _gaps(turned_all[a], flat[b]) <= max_distance + ROUNDING  # the orientation that found it
                found.append(np.sort(np.stack([a[close], b[close]], axis=1), axis=1))
            steps.update()
        found = [np.unique(np.concatenate(found), axis=0)]  # a pair found by many tables is kept once
    steps.close()
    unique = found[0]  # each pair measured once, however often it was found
    pairs = pd.DataFrame(
        {"a": unique[:, 0], "b": unique[:, 1], "distance": distances(described, unique[:, 0], unique[:, 1])}
    )
    pairs = pairs[pairs["distance"] <= max_distance + ROUNDING]
    return pairs.sort_values(["a", "b"], ignore_index=True)


def near_duplicate_table(pairs: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """``catalog/near_duplicates.csv``: the pairs of rows of ``labels`` (id, split; in the packed
    order) named by id and split; the pairs that cross the splits first, then by distance."""
    a, b = labels.iloc[pairs["a"]].reset_index(drop=True), labels.iloc[pairs["b"]].reset_index(drop=True)
    table = pd.DataFrame(
        {
            "id_a": a["id"],
            "id_b": b["id"],
            "split_a": a["split"],
            "split_b": b["split"],
            "distance": pairs["distance"].round(4).to_numpy(),
        },
        columns=COLUMNS,
    )
    crossing = table["split_a"] != table["split_b"]
    order = np.lexsort((table["id_b"], table["id_a"], table["distance"], ~crossing.to_numpy()))
    return table.iloc[order].reset_index(drop=True)


def crossing_pairs(table: pd.DataFrame) -> int:
    """How many near-duplicate pairs have one image in each split."""
    return int((table["split_a"] != table["split_b"]).sum())


def read_near_duplicates(path: str | os.PathLike) -> pd.DataFrame:
    """The near-duplicate table as written, ids and splits kept as text."""
    return pd.read_csv(path, dtype={"id_a": str, "id_b": str, "split_a": str, "split_b": str}, keep_default_na=False)


def find_near_duplicates(images: str | os.PathLike, labels: str | os.PathLike, max_distance: float) -> pd.DataFrame:
    """The near-duplicate table of the packed ``images`` whose rows ``labels`` (id, split) names."""
    named = pd.read_parquet(labels, columns=["id", "split"])
    described = descriptors(open_packed(images), progress=True)
    if len(described) != len(named):
        raise ValueError(f"{images} holds {len(described)} images but {labels} names {len(named)}")
    return near_duplicate_table(near_pairs(described, max_distance, progress=True), named)
