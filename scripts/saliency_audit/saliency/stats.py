"""Localisation statistics of every audited image's Grad-CAM maps against its object region, and the
verdict of its intervention probes (rule ``saliency_stats``).

Streams the audit tables a batch at a time: reads each image's object region (the ``regions``
rule's), then scores the map of the predicted class (unsuffixed columns) and of every
class (``<metric>_<class>`` columns), and joins the probes' columns
(``background_reliance``, ``prob_object_only``, ``prob_background_only``, the
margins of every class under each view) with the ``background_reliant`` flag. Each batch's rows go straight to the
output Parquet file, so memory stays that of one batch at any catalog size
(kept per-batch results would also pin the allocator's heap under every later
batch's temporaries, and the job would grow by megabytes per batch). Images without a usable region are
listed in ``region_problems.csv`` and left out; an all-zero map keeps its row
with ``state = empty_map``.
"""

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from tqdm import tqdm

from saliency_audit.audit.map_geometry import MapGeometry
from saliency_audit.audit.tables import (
    AuditMeta,
    audit_batches,
    audit_dataset,
    predicted_index,
    read_cams,
)
from saliency_audit.data.packing import PackedIndex
from saliency_audit.data.region_store import PROBLEM_COLUMNS, RegionStore
from saliency_audit.runtime.atomic_io import atomic_path
from saliency_audit.saliency.localisation import METRICS, localisation
from saliency_audit.saliency.vocabulary import STATE_NO_OBJECT_EXPECTED, STATE_OK


def image_stats(
    frame: pd.DataFrame,
    cams: np.ndarray,
    masks: np.ndarray,
    classes: list[str],
    min_object_energy: float,
    geometry: MapGeometry,
    object_classes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Statistics of one batch: ``frame`` has id/split/label/predicted/prob_*, ``cams`` is B x C x h x w.
    A prediction of a class outside ``object_classes`` (saliency.object_classes; None: every class)
    has no object to rest on: its state is ``no_object_expected`` and it is never flagged; the
    statistics of its maps are kept."""
    batch, n_classes = cams.shape[:2]
    scores = localisation(
        cams.reshape(batch * n_classes, *cams.shape[2:]), np.repeat(masks, n_classes, axis=0), geometry
    )
    out = frame.reset_index(drop=True).copy()
    out["correct"] = (out["label"].astype(str) == out["predicted"].astype(str)).to_numpy()
    chosen = np.arange(batch) * n_classes + predicted_index(out["predicted"], classes)
    columns = scores.as_columns()
    for name, values in columns.items():
        out[name] = values[chosen]
    if object_classes is not None:
        no_object = ~out["predicted"].astype(str).isin(list(object_classes)).to_numpy()
        out.loc[no_object, "state"] = STATE_NO_OBJECT_EXPECTED
    out["background_focused"] = (out["state"] == STATE_OK).to_numpy() & (out["relative_energy"] < min_object_energy)
    for k, name in enumerate(classes):
        for metric in (*METRICS, "state"):
            out[f"{metric}_{name}"] = columns[metric][k::n_classes]
    for column in ("label", "predicted"):
        out[column] = pd.Categorical(out[column].astype(str), categories=classes)
    return out


def with_probes(stats: pd.DataFrame, probes: pd.DataFrame, min_reliance: float) -> pd.DataFrame:
    """``stats`` with the probes' columns (``probes`` is indexed by id) and ``background_reliant``:
    the prediction loses at least ``min_reliance`` of its margin when the background is replaced."""
    out = stats.join(probes, on="id", validate="one_to_one")
    out["background_reliant"] = (
        (out["probe_state"] == STATE_OK).to_numpy()
        & (out["state"] != STATE_NO_OBJECT_EXPECTED).to_numpy()
        & (out["background_reliance"].to_numpy() >= min_reliance)
    )
    return out


def write_saliency_table(
    dataset: ds.Dataset,
    regions: RegionStore,
    index: PackedIndex,
    region: dict[str, Any],
    probes: pd.DataFrame,
    thresholds: tuple[float, float],
    out: str | os.PathLike,
    batch_size: int = 1024,
    object_classes: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.Series]:
    """Write the statistics of every image with a region to ``out``; return the region problems
    and the number of images per ``state``.

    ``index`` gives each id's row of the packed array, and so of ``regions``; ``region`` is
    saliency.object (for the message when no image has a region); ``probes`` holds the probes'
    columns indexed by id; ``thresholds`` are (min_object_energy, min_reliance); ``object_classes``
    the classes whose evidence is expected on the object (``image_stats``).
    """
    min_object_energy, min_reliance = thresholds
    meta = AuditMeta.read(dataset)
    classes, map_shape, geometry = meta.classes, meta.map_shape, meta.geometry
    unknown = [name for name in object_classes or () if name not in classes]
    if unknown:
        raise ValueError(f"config key saliency.object_classes: {unknown} are not classes of the model {classes}")
    keep = ["id", "split", "label", "predicted", *(f"prob_{c}" for c in classes)]
    problems: list[tuple[int, str, str]] = []
    states = pd.Series(dtype="int64")
    with atomic_path(out) as tmp:
        writer = None
        progress = tqdm(total=dataset.count_rows(), desc="saliency", unit="img", mininterval=2.0)
        for batch in audit_batches(dataset, keep + [f"cam_{c}" for c in classes], batch_size):
            if batch.num_rows == 0:
                continue
            frame = batch.select(keep).to_pandas()
            ids = frame["id"].astype(str).tolist()
            masks, _, bad = regions.read(index.rows(ids), ids)
            problems += [(ids[position], problem, detail) for position, problem, detail in bad]
            usable = np.ones(len(ids), dtype=bool)
            usable[[position for position, _, _ in bad]] = False
            if usable.any():
                cams = read_cams(batch, classes, map_shape)[usable]
                stats = image_stats(
                    frame[usable], cams, masks[usable], classes, min_object_energy, geometry, object_classes
                )
                stats = with_probes(stats, probes, min_reliance)
                table = pa.Table.from_pandas(stats, schema=writer.schema if writer else None, preserve_index=False)
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                states = states.add(stats["state"].value_counts(), fill_value=0)
            progress.update(batch.num_rows)
        progress.close()
        problem_table = pd.DataFrame(problems, columns=PROBLEM_COLUMNS)
        if writer is None:
            counts = problem_table["problem"].value_counts().to_dict()
            details = problem_table["detail"].head(1).tolist()
            raise ValueError(
                f"no image has a usable object region (saliency.object = {region}): {counts}; e.g. {details}. "
                "A catalog of your own inherits the demo's mask files unless you set saliency.object "
                "(e.g. {method: threshold}) or run with --replace-workflow-config"
            )
        writer.close()
    return problem_table, states.astype("int64")


def run_saliency_stats(
    parts: Sequence[str | os.PathLike],
    probe_parts: Sequence[str | os.PathLike],
    regions: tuple[Sequence[str | os.PathLike], Sequence[str | os.PathLike]],
    index: str | os.PathLike,
    region: dict[str, Any],
    thresholds: tuple[float, float],
    out: str | os.PathLike,
    object_classes: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.Series]:
    """Read the rule's inputs (audit tables, probe parts, the regions parts and their problem lists, the
    packed images' index) and write the statistics table to ``out`` (see ``write_saliency_table``); return
    the region problems and the number of images per ``state``, for the rule to write and log."""
    dataset = audit_dataset(parts)
    probes = pd.concat([pd.read_parquet(part) for part in probe_parts], ignore_index=True)
    packed_index = PackedIndex.read(index)
    return write_saliency_table(
        dataset,
        RegionStore.open(*regions, len(packed_index)),
        packed_index,
        region,
        probes.set_index(probes["id"].astype(str)).drop(columns="id"),
        thresholds,
        out,
        object_classes=object_classes,
    )
