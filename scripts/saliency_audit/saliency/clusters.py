"""SpRAy-style clusters of the predicted-class Grad-CAM maps, per predicted class (rule ``strategy_clusters``).

Two streaming passes over the audit tables: the first keeps only a short
feature vector per image (clustering input), the second sums the maps of each
cluster for its mean map. A cluster whose maps mostly peak outside the object
(pointing-game hit rate below one half), or whose mean relative energy on the
object is below ``saliency.min_object_energy``, is a candidate shortcut: a
recurring way of deciding that rests on the background.
"""

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from saliency_audit.audit.map_geometry import place
from saliency_audit.audit.tables import (
    AuditMeta,
    audit_batches,
    audit_dataset,
    predicted_index,
    read_cams,
)
from saliency_audit.data.image_io import open_packed, read_rows
from saliency_audit.data.packing import PackedIndex
from saliency_audit.saliency.strategies import map_features, spectral_clusters

EXAMPLES = 4  # example images per cluster in the figure

# per predicted class, per cluster: (image, its predicted-class map placed on it) pairs
Examples = dict[str, dict[int, list[tuple[np.ndarray, np.ndarray]]]]


def predicted_maps(batch: Any, classes: list[str], map_shape: Sequence[int]) -> np.ndarray:
    """B x h x w: each image's map for the class it was predicted as."""
    cams = read_cams(batch, classes, map_shape)
    return cams[
        np.arange(len(cams)), predicted_index(batch.column("predicted").to_numpy(zero_copy_only=False), classes)
    ]


def cluster_maps(dataset: ds.Dataset, stats: pd.DataFrame, clusters: dict[str, Any], image_size: int) -> pd.DataFrame:
    """id, predicted, cluster for every scored image (clustered within its predicted class)."""
    meta = AuditMeta.read(dataset)
    classes, map_shape, geometry = meta.classes, meta.map_shape, meta.geometry
    scored = pa.array(stats["id"].astype(str).unique())
    ids, predicted, vectors = [], [], []
    columns = ["id", "predicted", *(f"cam_{c}" for c in classes)]
    for batch in audit_batches(dataset, columns, 4096):
        keep = pc.is_in(batch.column("id"), value_set=scored)  # a hash lookup: linear in the images
        if not pc.any(keep).as_py():
            continue
        batch = batch.filter(keep)
        ids += batch.column("id").to_pylist()
        predicted += batch.column("predicted").to_pylist()
        maps = predicted_maps(batch, classes, map_shape)
        vectors.append(map_features(maps, clusters["features"], geometry, image_size))
    features = np.concatenate(vectors)
    table = pd.DataFrame({"id": ids, "predicted": predicted, "cluster": -1})
    for name in classes:
        members = np.flatnonzero(table["predicted"].to_numpy() == name)
        if len(members) == 0:
            continue
        result = spectral_clusters(features[members], clusters["neighbours"], clusters["max_clusters"], seed=0)
        table.loc[members, "cluster"] = result.labels
        print(
            f"{name}: {len(members)} maps, {result.n_clusters} clusters, "
            f"smallest Laplacian eigenvalues {np.round(result.eigenvalues[:6], 4).tolist()}",
            file=sys.stderr,
        )
    return table[["id", "cluster"]]


def cluster_summary(stats: pd.DataFrame, min_object_energy: float) -> pd.DataFrame:
    """Per predicted class and cluster: size, mean statistics, candidate-shortcut mark."""
    summary = (
        stats.groupby(["predicted", "cluster"], observed=True)
        .agg(
            n=("id", "size"),
            energy_in_object=("energy_in_object", "mean"),
            relative_energy=("relative_energy", "mean"),
            pointing_hit=("pointing_hit", "mean"),
            flag_rate=("background_focused", "mean"),
            accuracy=("correct", "mean"),
        )
        .reset_index()
    )
    summary["share"] = summary["n"] / summary.groupby("predicted", observed=True)["n"].transform("sum")
    # off the object: most maps peak outside it, or the mean map keeps too little energy on it
    summary["candidate_shortcut"] = (summary["pointing_hit"] < 0.5) | (summary["relative_energy"] < min_object_energy)
    return summary


def mean_maps(dataset: ds.Dataset, stats: pd.DataFrame, image_size: int) -> dict[tuple[str, int], np.ndarray]:
    """Mean upsampled predicted-class map per (predicted class, cluster), streamed."""
    meta = AuditMeta.read(dataset)
    classes, map_shape, geometry = meta.classes, meta.map_shape, meta.geometry
    key = stats.set_index("id")[["predicted", "cluster"]]
    known_ids = pa.array(key.index.astype(str))
    sums: dict[tuple[str, int], np.ndarray] = {}
    counts: dict[tuple[str, int], int] = {}
    for batch in audit_batches(dataset, ["id", "predicted", *(f"cam_{c}" for c in classes)], 4096):
        ids = batch.column("id").to_numpy(zero_copy_only=False)
        known = pc.is_in(batch.column("id"), value_set=known_ids).to_numpy(zero_copy_only=False)
        if not known.any():
            continue
        maps = predicted_maps(batch.filter(known), classes, map_shape)
        maps = place(maps, geometry, (image_size, image_size)).numpy()
        groups = key.loc[ids[known]]
        for (name, cluster), positions in (
            groups.reset_index(drop=True).groupby(["predicted", "cluster"]).indices.items()
        ):
            sums[(name, cluster)] = sums.get((name, cluster), 0) + maps[positions].sum(axis=0)
            counts[(name, cluster)] = counts.get((name, cluster), 0) + len(positions)
    return {k: sums[k] / counts[k] for k in sums}


def cluster_examples(
    dataset: ds.Dataset, stats: pd.DataFrame, images: np.ndarray, index: PackedIndex, image_size: int
) -> Examples:
    """Up to ``EXAMPLES`` images per (predicted class, cluster) for the figures, with their maps.

    A seeded sample per (class, cluster), all fetched with one scan of the audit tables;
    ``index`` gives each id's row of the packed array. Classes without a scored image are left out.
    """
    meta = AuditMeta.read(dataset)
    chosen = stats.sample(frac=1.0, random_state=0).groupby(["predicted", "cluster"], observed=True).head(EXAMPLES)
    table = dataset.to_table(filter=ds.field("id").isin(chosen["id"].tolist()))
    maps = place(predicted_maps(table, meta.classes, meta.map_shape), meta.geometry, (image_size, image_size)).numpy()
    map_of = dict(zip(table.column("id").to_pylist(), maps))
    image_of = dict(zip(chosen["id"], read_rows(images, index.rows(chosen["id"]))))
    examples: Examples = {}
    for name in meta.classes:
        members = chosen[chosen["predicted"] == name]
        if members.empty:
            continue
        examples[name] = {
            int(cluster): [(image_of[i], map_of[i]) for i in group["id"]]
            for cluster, group in members.groupby("cluster")
        }
    return examples


@dataclass(frozen=True)
class Strategies:
    """What rule ``strategy_clusters`` writes: each image's cluster, the per-cluster summary, and
    what its figures show (mean maps and examples, per predicted class in ``classes`` order)."""

    classes: list[str]
    clusters: pd.DataFrame
    summary: pd.DataFrame
    means: dict[tuple[str, int], np.ndarray]
    examples: Examples


def run_strategy_clusters(
    parts: Sequence[str | os.PathLike],
    stats_path: str | os.PathLike,
    images_path: str | os.PathLike,
    index_path: str | os.PathLike,
    clusters: dict[str, Any],
    min_object_energy: float,
) -> Strategies:
    """Read the rule's inputs (audit tables, localisation statistics, packed images and their index),
    cluster the maps and gather everything the rule writes."""
    dataset = audit_dataset(parts)
    stats = pd.read_parquet(stats_path)
    images = open_packed(images_path)
    image_size = images.shape[1]
    table = cluster_maps(dataset, stats, clusters, image_size)
    stats = stats.merge(table, on="id", validate="one_to_one")
    summary = cluster_summary(stats, min_object_energy)
    means = mean_maps(dataset, stats, image_size)
    examples = cluster_examples(dataset, stats, images, PackedIndex.read(index_path), image_size)
    return Strategies(AuditMeta.read(dataset).classes, table, summary, means, examples)
