"""Which images the galleries show (rule ``galleries``: image | Grad-CAM of each class, as in the seed's figures).

Per predicted class, the correct predictions that rest most on the background
and, apart, the misclassified ones (``most_background_reliant``); per candidate
shortcut cluster, its members; a random sample (optionally restricted by
``saliency.gallery.where``, a filter on catalog columns such as ``0.05 < z <
0.08``, see ``catalog_filter``); and the top losses of the valid split. The
object region is outlined in cyan on every panel;
``saliency_audit.report.saliency_figures`` draws them, and each gallery's
``gallery_table`` (the ids shown, in order, with their statistics) is written
beside it.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from saliency_audit.audit.map_geometry import place
from saliency_audit.audit.tables import AuditMeta, audit_dataset, read_cams
from saliency_audit.data.catalog_filter import FilterError, evaluate_filter, parse_filter
from saliency_audit.data.image_io import open_packed, read_rows
from saliency_audit.data.packing import PackedIndex
from saliency_audit.data.region_store import RegionStore
from saliency_audit.saliency.vocabulary import STATE_NO_OBJECT_EXPECTED, STATE_OK


class GalleryError(ValueError):
    """A gallery setting cannot be applied; the message names the key."""


def most_background_reliant(stats: pd.DataFrame, members: pd.Series, n: int) -> pd.DataFrame:
    """The ``n`` images of ``members`` (a boolean mask of ``stats``) whose prediction rests most on the
    background: the highest ``background_reliance`` of the probes when they ran, else the least map
    energy on the object. Ranking by the maps alone puts the misclassified images first (their maps
    are weak everywhere) and hides the shortcut, hence the probes, and galleries of correct and of
    misclassified predictions apart."""
    members = members & (stats["state"] != STATE_NO_OBJECT_EXPECTED)  # nothing to rest on but the background
    if "background_reliance" in stats:
        pool = stats[members.to_numpy() & (stats["probe_state"] == STATE_OK).to_numpy()]
        return pool.sort_values(["background_reliance", "relative_energy"], ascending=[False, True]).head(n)
    pool = stats[members.to_numpy() & (stats["state"] == STATE_OK).to_numpy()]
    return pool.nsmallest(n, ["relative_energy", "energy_in_object"])


GALLERY_COLUMNS = ("id", "split", "label", "predicted", "correct", "cluster", "relative_energy",
                   "energy_in_object", "pointing_hit", "background_reliance", "background_reliant",
                   "background_focused", "state", "probe_state")  # fmt: skip


def gallery_table(chosen: pd.DataFrame) -> pd.DataFrame:
    """The ids a gallery shows, in its order (``rank`` 1 on top), with the statistics it was chosen by
    and the probability of the predicted class."""
    table = chosen[[c for c in GALLERY_COLUMNS if c in chosen]].reset_index(drop=True)
    predicted = chosen["predicted"].astype(str).to_numpy()
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    table["prob_predicted"] = [chosen[f"prob_{p}"].iloc[k] for k, p in enumerate(predicted)]
    return table


def random_sample(stats: pd.DataFrame, catalog: pd.DataFrame, n: int, where: str | None, seed: int) -> pd.DataFrame:
    """``n`` random scored images, among those whose catalog row satisfies ``where``."""
    pool = stats
    if where:
        try:
            allowed = catalog.index[evaluate_filter(parse_filter(where), catalog)]
        except FilterError as error:
            raise GalleryError(f"config key saliency.gallery.where {where!r}: {error}") from None
        pool = stats[stats["id"].isin(allowed)]
    return pool.sample(min(n, len(pool)), random_state=seed).sort_values("id")


def map_columns(classes: Sequence[str]) -> list[str]:
    """The audit-table columns a panel reads: the id and each class's map."""
    return ["id", *(f"cam_{c}" for c in classes)]


def panels_of(
    table: pa.Table | pa.RecordBatch, meta: AuditMeta, images: np.ndarray, index: PackedIndex, regions: RegionStore
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a panel of each row of ``table`` (``map_columns``) shows, in its order: its pixels, every
    class's map placed on them (N x C x size x size) and its object region. The one reader behind
    the galleries and the explorer."""
    ids = [str(i) for i in table.column("id").to_pylist()]
    cams = read_cams(table, meta.classes, meta.map_shape)
    rows = index.rows(ids)
    pixels = read_rows(images, rows)
    masks, _, _ = regions.read(rows, ids)
    size = pixels.shape[1]
    up = place(cams.reshape(-1, *cams.shape[2:]), meta.geometry, (size, size)).numpy()
    return pixels, up.reshape(len(ids), len(meta.classes), size, size), masks


def gallery_panels(
    chosen: pd.DataFrame, inputs: "GalleryInputs"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """What a gallery of ``chosen`` shows, in its order (``panels_of`` its rows), and the classes."""
    meta = AuditMeta.read(inputs.dataset)
    ids = chosen["id"].astype(str).tolist()
    table = inputs.dataset.to_table(columns=map_columns(meta.classes), filter=ds.field("id").isin(ids))
    order = pd.Series(np.arange(table.num_rows), index=table.column("id").to_pylist()).loc[ids].to_numpy()
    pixels, maps, masks = panels_of(table.take(order), meta, inputs.images, inputs.index, inputs.regions)
    return pixels, maps, masks, meta.classes


@dataclass(frozen=True)
class GalleryInputs:
    """What the galleries are chosen from and drawn with; ``index`` gives each id's row of ``images``
    and ``regions``, ``catalog`` is the clean catalog indexed by id, ``candidates`` the rows of
    clusters.csv marked candidate shortcut."""

    dataset: ds.Dataset
    classes: list[str]
    stats: pd.DataFrame
    catalog: pd.DataFrame
    index: PackedIndex
    images: np.ndarray
    regions: RegionStore
    candidates: pd.DataFrame


def read_gallery_inputs(
    parts: Sequence[str | os.PathLike],
    stats: str | os.PathLike,
    clean: str | os.PathLike,
    index: str | os.PathLike,
    images: str | os.PathLike,
    regions: tuple[Sequence[str | os.PathLike], Sequence[str | os.PathLike]],
    clusters: str | os.PathLike,
) -> GalleryInputs:
    """Open the rule's inputs: audit tables, final stats table, clean catalog, packed images and their index,
    the regions parts and their problem lists, the strategy clusters' table."""
    dataset = audit_dataset(parts)
    classes = AuditMeta.read(dataset).classes
    table = pd.read_parquet(stats)
    catalog = pd.read_parquet(clean).set_index("id")
    packed_index = PackedIndex.read(index)
    summary = pd.read_csv(clusters)
    candidates = summary[summary["candidate_shortcut"].astype(bool)]
    return GalleryInputs(dataset, classes, table, catalog, packed_index, open_packed(images),
                         RegionStore.open(*regions, len(packed_index)), candidates)  # fmt: skip
