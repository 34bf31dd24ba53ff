"""strategy_clusters: SpRAy-style clusters of the predicted-class Grad-CAM maps, per predicted class.

Two streaming passes over the audit tables: the first keeps only a short
feature vector per image (clustering input), the second sums the maps of each
cluster for its mean map. A cluster whose maps mostly peak outside the object
(pointing-game hit rate below one half), or whose mean relative energy on the
object is below ``saliency.min_object_energy``, is a candidate shortcut: a
recurring way of deciding that rests on the background.
"""

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from saliency_audit.audit.map_geometry import MapGeometry, place
from saliency_audit.audit.tables import audit_batches, audit_dataset, predicted_index, read_audit_metadata, read_cams
from saliency_audit.data.image_io import open_packed, read_rows
from saliency_audit.report.figures import plt, safe_name, save_figure
from saliency_audit.runtime.atomic_io import write_csv, write_parquet
from saliency_audit.runtime.job import start_job
from saliency_audit.saliency.strategies import map_features, spectral_clusters

EXAMPLES = 4  # example images per cluster in the figure


def predicted_maps(batch: Any, classes: list[str], map_shape: list[int]) -> np.ndarray:
    """B x h x w: each image's map for the class it was predicted as."""
    cams = read_cams(batch, classes, map_shape)
    return cams[
        np.arange(len(cams)), predicted_index(batch.column("predicted").to_numpy(zero_copy_only=False), classes)
    ]


def cluster_maps(dataset: ds.Dataset, stats: pd.DataFrame, clusters: dict[str, Any], image_size: int) -> pd.DataFrame:
    """id, predicted, cluster for every scored image (clustered within its predicted class)."""
    meta = read_audit_metadata(dataset.schema)
    classes, map_shape = meta["classes"], meta["map_shape"]
    geometry = MapGeometry.from_dict(meta["map_geometry"])
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
    meta = read_audit_metadata(dataset.schema)
    classes, map_shape = meta["classes"], meta["map_shape"]
    geometry = MapGeometry.from_dict(meta["map_geometry"])
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


def cluster_figure(
    name: str,
    summary: pd.DataFrame,
    means: dict[tuple[str, int], np.ndarray],
    examples: dict[int, list[tuple[np.ndarray, np.ndarray]]],
) -> plt.Figure:
    """One column per cluster: its mean map, then example images under their own maps."""
    rows = summary[summary["predicted"] == name].sort_values("cluster")
    n = len(rows)
    fig, axes = plt.subplots(1 + EXAMPLES, n, figsize=(2.2 * n, 2.2 * (1 + EXAMPLES)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for column, (_, row) in enumerate(rows.iterrows()):
        cluster = int(row["cluster"])
        ax = axes[0, column]
        ax.imshow(means[(name, cluster)], cmap="inferno", interpolation="bicubic")
        mark = "\ncandidate shortcut" if row["candidate_shortcut"] else ""
        ax.set_title(
            f"cluster {cluster}: n={int(row['n'])} ({row['share']:.0%})\n"
            f"energy {row['energy_in_object']:.2f}, relative {row['relative_energy']:.2f}{mark}",
            fontsize=7,
            color="#bc1f1f" if row["candidate_shortcut"] else "black",
        )
        for r, (image, cam) in enumerate(examples.get(cluster, [])[:EXAMPLES], start=1):
            axes[r, column].imshow(image)
            size = image.shape[0]
            axes[r, column].imshow(cam, alpha=0.6, cmap="inferno", interpolation="bicubic", extent=(0, size, size, 0))
    fig.suptitle(f"Strategies of predicted '{name}': mean Grad-CAM per cluster and examples", fontsize=9)
    fig.tight_layout()
    return fig


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    params = snakemake.params
    dataset = audit_dataset(snakemake.input.parts)
    stats = pd.read_parquet(snakemake.input.stats)
    images = open_packed(snakemake.input.images)
    image_size = images.shape[1]
    clusters = cluster_maps(dataset, stats, params.clusters, image_size)
    write_parquet(clusters, snakemake.output.clusters)

    stats = stats.merge(clusters, on="id", validate="one_to_one")
    summary = cluster_summary(stats, params.min_object_energy)
    write_csv(summary, snakemake.output.summary)
    means = mean_maps(dataset, stats, image_size)
    meta = read_audit_metadata(dataset.schema)
    index = pd.read_parquet(snakemake.input.index)
    row_of = pd.Series(index["row"].to_numpy(), index=index["id"].astype(str))
    out = Path(snakemake.output.figures)
    out.mkdir(parents=True, exist_ok=True)
    # example images: a seeded sample per (class, cluster), all fetched with one scan of the audit tables
    chosen = stats.sample(frac=1.0, random_state=0).groupby(["predicted", "cluster"], observed=True).head(EXAMPLES)
    table = dataset.to_table(filter=ds.field("id").isin(chosen["id"].tolist()))
    geometry = MapGeometry.from_dict(meta["map_geometry"])
    maps = place(predicted_maps(table, meta["classes"], meta["map_shape"]), geometry, (image_size, image_size)).numpy()
    map_of = dict(zip(table.column("id").to_pylist(), maps))
    image_of = dict(zip(chosen["id"], read_rows(images, row_of.loc[chosen["id"].astype(str)].to_numpy())))
    for k, name in enumerate(meta["classes"]):
        members = chosen[chosen["predicted"] == name]
        if members.empty:
            continue
        examples = {
            int(cluster): [(image_of[i], map_of[i]) for i in group["id"]]
            for cluster, group in members.groupby("cluster")
        }
        save_figure(cluster_figure(name, summary, means, examples), out / safe_name(k, name))
    print(summary.to_string(index=False), file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
