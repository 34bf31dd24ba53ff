"""SpRAy-style clusters of the predicted-class Grad-CAM maps, per predicted class (rule ``strategy_clusters``).

Two streaming passes over the audit tables: the first keeps only a short
feature vector per image (clustering input), the second sums the maps of each
cluster for its mean map. A cluster is a candidate shortcut by contrast with the
rest of its class (``contrast``): a recurring way of deciding that rests on the
background more than the class's other ways do. A class that is one cluster has
nothing to contrast and no candidate, however low its numbers: that is the
class's behaviour, which the probes and the summary report.
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
from saliency_audit.data.region_store import RegionStore
from saliency_audit.saliency.strategies import (
    Clustering,
    kmeans_clusters,
    map_features,
    object_features,
    spectral_clusters,
)
from saliency_audit.saliency.vocabulary import STATE_OK

EXAMPLES = 4  # example images per cluster in the figure

# per predicted class, per cluster: (image, its predicted-class map placed on it) pairs
Examples = dict[str, dict[int, list[tuple[np.ndarray, np.ndarray]]]]


def predicted_maps(batch: Any, classes: list[str], map_shape: Sequence[int]) -> np.ndarray:
    """B x h x w: each image's map for the class it was predicted as."""
    cams = read_cams(batch, classes, map_shape)
    return cams[
        np.arange(len(cams)), predicted_index(batch.column("predicted").to_numpy(zero_copy_only=False), classes)
    ]


NOT_CLUSTERED = -1  # the cluster of an image without a scored map (no object region, an empty map)


def cluster_maps(
    dataset: ds.Dataset, stats: pd.DataFrame, clusters: dict[str, Any], regions: RegionStore, index: PackedIndex
) -> pd.DataFrame:
    """id, cluster for every image of ``stats``, clustered within its predicted class; those without a
    scored map (state other than ok) are ``NOT_CLUSTERED``: their features would be zeros, which
    k-means or the graph would make a cluster of their own."""
    meta = AuditMeta.read(dataset)
    classes, map_shape, geometry = meta.classes, meta.map_shape, meta.geometry
    ok = stats.loc[(stats["state"] == STATE_OK).to_numpy(), "id"].astype(str)
    scored = pa.array(ok.unique())
    ids, predicted, vectors = [], [], []
    columns = ["id", "predicted", *(f"cam_{c}" for c in classes)]
    for batch in audit_batches(dataset, columns, 1024):
        keep = pc.is_in(batch.column("id"), value_set=scored)  # a hash lookup: linear in the images
        if not pc.any(keep).as_py():
            continue
        batch = batch.filter(keep)
        batch_ids = batch.column("id").to_pylist()
        ids += batch_ids
        predicted += batch.column("predicted").to_pylist()
        maps = predicted_maps(batch, classes, map_shape)
        if clusters["features"] == "object":
            objects = regions.read(index.rows(batch_ids), batch_ids)[0]
            vectors.append(object_features(place(maps, geometry, objects.shape[1:]).numpy(), objects))
        else:
            vectors.append(map_features(maps, clusters["features"], geometry, regions.size))
    features = np.concatenate(vectors) if vectors else np.zeros((0, 1))
    if clusters["features"] == "object" and "background_reliance" in stats:
        reliance = stats.set_index("id")["background_reliance"].reindex(ids).to_numpy(dtype=np.float64)
        features = np.column_stack([features, np.clip(np.nan_to_num(reliance), 0.0, 1.0)])
    table = pd.DataFrame({"id": ids, "predicted": predicted, "cluster": NOT_CLUSTERED})
    for name in classes:
        members = np.flatnonzero(table["predicted"].to_numpy() == name)
        if len(members) == 0:
            continue
        result = choose_clusters(features[members], clusters)
        table.loc[members, "cluster"] = result.labels
        print(f"{name}: {len(members)} maps, {result.n_clusters} clusters by {result.chosen_by} "
              f"{np.round(result.criterion[:8], 4).tolist()}", file=sys.stderr)  # fmt: skip
    every = pd.DataFrame({"id": stats["id"].astype(str).to_numpy()})
    merged = every.merge(table[["id", "cluster"]], on="id", how="left")
    return merged.fillna({"cluster": NOT_CLUSTERED}).astype({"cluster": int})


def choose_clusters(features: np.ndarray, clusters: dict[str, Any]) -> Clustering:
    """k-means for the object features, the spectral clustering for the map-shaped ones."""
    if clusters["features"] == "object":
        return kmeans_clusters(features, clusters["max_clusters"], seed=0)
    return spectral_clusters(features, clusters["neighbours"], clusters["max_clusters"], seed=0)


MIN_CONTRAST = 0.2  # a candidate's rate of off-object evidence exceeds the rest of its class's by this much
MAX_P_VALUE = 0.01  # ... and Fisher's exact test says the rest would rarely show such a difference by chance


def off_object(stats: pd.DataFrame) -> tuple[str, pd.Series]:
    """The per-image evidence that a prediction rests off the object, and its name: the probes' verdict
    ``background_reliant`` when they ran, else a map that peaks outside the object (pointing miss);
    images without a verdict (another state) are NaN and count on neither side."""
    if "background_reliant" in stats:
        scored = (stats["probe_state"] == STATE_OK).to_numpy()
        return "background_reliant", stats["background_reliant"].astype(float).where(scored)
    scored = (stats["state"] == STATE_OK).to_numpy() & stats["pointing_hit"].notna().to_numpy()
    return "pointing_miss", (1.0 - stats["pointing_hit"].astype(float)).where(scored)


def contrast(hits: int, n: int, rest_hits: int, rest_n: int) -> tuple[float, float]:
    """(rate of a cluster minus that of the rest of its class, one-sided Fisher exact p of it)."""
    from scipy.stats import fisher_exact  # noqa: PLC0415  (scipy.stats: a second to import)

    if n == 0 or rest_n == 0:
        return float("nan"), float("nan")
    table = [[hits, n - hits], [rest_hits, rest_n - rest_hits]]
    return hits / n - rest_hits / rest_n, float(fisher_exact(table, alternative="greater").pvalue)


def cluster_summary(stats: pd.DataFrame) -> pd.DataFrame:
    """Per predicted class and cluster: size, share, mean statistics, accuracy, the rate of off-object
    evidence (``off_object``), its contrast with the rest of the class and the candidate-shortcut mark:
    a contrast of at least ``MIN_CONTRAST`` with a one-sided Fisher p below ``MAX_P_VALUE``."""
    measure, evidence = off_object(stats)
    stats = stats.assign(_hit=evidence.fillna(0.0), _scored=evidence.notna())
    extra = {"background_reliance": ("background_reliance", "mean")} if "background_reliance" in stats else {}
    stats = stats[stats["cluster"] != NOT_CLUSTERED]
    summary = (
        stats.groupby(["predicted", "cluster"], observed=True)
        .agg(
            n=("id", "size"),
            energy_in_object=("energy_in_object", "mean"),
            relative_energy=("relative_energy", "mean"),
            pointing_hit=("pointing_hit", "mean"),
            flag_rate=("background_focused", "mean"),
            accuracy=("correct", "mean"),
            **extra,
            hits=("_hit", "sum"),
            scored=("_scored", "sum"),
        )
        .reset_index()
    )
    per_class = summary.groupby("predicted", observed=True)
    summary["share"] = summary["n"] / per_class["n"].transform("sum")
    summary["clusters_in_class"] = per_class["cluster"].transform("size")
    summary["contrast_measure"] = measure
    summary["off_object_rate"] = summary["hits"] / summary["scored"].where(summary["scored"] > 0)
    rest_hits = per_class["hits"].transform("sum") - summary["hits"]
    rest_n = per_class["scored"].transform("sum") - summary["scored"]
    pairs = [
        contrast(int(h), int(n), int(rh), int(rn)) if k > 1 else (float("nan"), float("nan"))
        for h, n, rh, rn, k in zip(summary["hits"], summary["scored"], rest_hits, rest_n, summary["clusters_in_class"])
    ]
    summary["contrast"] = [c for c, _ in pairs]
    summary["contrast_p"] = [p for _, p in pairs]
    summary["candidate_shortcut"] = (summary["contrast"] >= MIN_CONTRAST) & (summary["contrast_p"] < MAX_P_VALUE)
    return summary.drop(columns=["hits"]).rename(columns={"scored": "n_scored"})


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
    regions: tuple[Sequence[str | os.PathLike], Sequence[str | os.PathLike]],
    clusters: dict[str, Any],
) -> Strategies:
    """Read the rule's inputs (audit tables, localisation statistics, packed images and their index,
    the object regions' parts and problems), cluster the maps and gather everything the rule writes."""
    dataset = audit_dataset(parts)
    stats = pd.read_parquet(stats_path)
    images = open_packed(images_path)
    image_size = images.shape[1]
    index = PackedIndex.read(index_path)
    table = cluster_maps(dataset, stats, clusters, RegionStore.open(*regions, len(index)), index)
    stats = stats.merge(table, on="id", validate="one_to_one")
    summary = cluster_summary(stats)
    clustered = stats[stats["cluster"] != NOT_CLUSTERED]
    means = mean_maps(dataset, clustered, image_size)
    examples = cluster_examples(dataset, clustered, images, index, image_size)
    return Strategies(AuditMeta.read(dataset).classes, table, summary, means, examples)
