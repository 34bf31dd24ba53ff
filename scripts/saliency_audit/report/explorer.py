"""The audit explorer (rule ``explorer``): one self-contained HTML page, every audited image a point
at its PCA position, coloured by a choice of label, prediction, flag, cluster or statistic; hovering
a point shows its cutout under the predicted class's Grad-CAM (inferno, alpha 0.6) and its values;
clicking pins it with the maps of every class and the object's outline.

The page works offline: the plotly.js bundle that the ``plotly`` package ships, the data and JPEG
sprite sheets of 48 px tiles are inlined; nothing is requested from any host. Each thumbnailed image
has ``2 + classes`` consecutive tiles: its cutout, each class's placed map (grey, ReLU'd and scaled
to its own maximum, as in the galleries) and its object region (white). The page blends them with
matplotlib's inferno table, so one cutout serves every class. Catalog strings reach the page only as
JSON data (``<`` escaped) and are shown with ``textContent``, never parsed as HTML. Above
``max_thumbnails`` images, flagged images get thumbnails first, then a sample stratified by label,
prediction and cluster; the others are points only.
"""

import base64
import io
import json
import os
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from matplotlib import colormaps
from PIL import Image

from saliency_audit.audit.tables import AuditMeta, audit_batches, audit_dataset
from saliency_audit.data.image_io import open_packed, shown_rgb
from saliency_audit.data.packing import PackedIndex
from saliency_audit.data.region_store import RegionStore
from saliency_audit.runtime.atomic_io import atomic_path
from saliency_audit.saliency.galleries import map_columns, panels_of

THUMBNAIL = 48  # px of a tile in the sprite sheets
SPRITE_COLUMNS = 64  # tiles per sprite row
SHEET_TILES = SPRITE_COLUMNS * 64  # tiles per sheet: 3072 x 3072 px, decoded only when a tile of it is shown
OVERLAY_ALPHA = 0.6
POINT_COLUMNS = [
    "id", "split", "label", "predicted", "correct", "probability", "target", "pc1", "pc2", "pc3",
    "relative_energy", "background_focused", "background_reliance", "background_reliant", "cluster",
]  # fmt: skip
FLAGS = ("background_focused", "background_reliant")


def explorer_points(
    pcs: pd.DataFrame, labels: pd.DataFrame, predictions: pd.DataFrame, stats: pd.DataFrame
) -> pd.DataFrame:
    """One row per audited image (``pcs``' order): its PCA position, label, prediction, the probability
    of each class (``prob_<class>``) and the saliency statistics where it has them (NaN / False where
    it has none)."""
    points = pcs.merge(labels[["id", "split", "target"]], on="id", how="left", validate="one_to_one")
    predicted = predictions.set_index("id").loc[points["id"]]
    probs = predicted[[c for c in predicted.columns if c.startswith("prob_")]].to_numpy()
    points["label"] = predicted["label"].astype(str).to_numpy()
    points["predicted"] = predicted["predicted"].astype(str).to_numpy()
    points["correct"] = points["label"] == points["predicted"]
    points["probability"] = probs.max(axis=1)
    prob_columns = [c for c in predicted.columns if c.startswith("prob_")]
    for column in prob_columns:
        points[column] = predicted[column].to_numpy(np.float64)
    wanted = [c for c in ("relative_energy", *FLAGS, "background_reliance", "cluster") if c in stats.columns]
    points = points.merge(stats[["id", *wanted]], on="id", how="left", validate="one_to_one")
    for column in POINT_COLUMNS:
        if column not in points.columns:
            points[column] = np.nan
    for flag in FLAGS:
        points[flag] = points[flag].eq(True).to_numpy(bool)  # NaN (no statistics) is not flagged
    for axis in ("pc2", "pc3"):  # pca.components below 3: the missing axes are flat
        if axis not in pcs.columns:
            points[axis] = 0.0
    return points[POINT_COLUMNS + prob_columns].reset_index(drop=True)


def choose_thumbnails(points: pd.DataFrame, limit: int, seed: int = 0) -> np.ndarray:
    """The rows of ``points`` that get a thumbnail (sorted): all when there are at most ``limit``;
    else the flagged first, then a sample of the rest stratified by label, prediction and strategy
    cluster: every stratum gets one before any gets a second, then each in proportion to its size."""
    if len(points) <= limit:
        return np.arange(len(points))
    flagged = np.flatnonzero(points[list(FLAGS)].any(axis=1).to_numpy())
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(flagged)[:limit]
    room = limit - len(chosen)
    if room > 0:
        rest = points.drop(index=flagged)
        strata = rest.groupby(["label", "predicted", "cluster"], sort=True, dropna=False).indices.values()
        rows = [rng.permutation(rest.index.to_numpy()[members]) for members in strata]
        share = np.concatenate([np.arange(len(r)) / len(r) for r in rows])  # 0 for each stratum's first
        order = np.lexsort((rng.random(len(share)), share))
        chosen = np.concatenate([chosen, np.concatenate(rows)[order[:room]]])
    return np.sort(chosen.astype(np.int64))


def _resized(plane: np.ndarray, resample: Image.Resampling) -> np.ndarray:
    """One float plane resized to THUMBNAIL x THUMBNAIL."""
    image = Image.fromarray(np.asarray(plane, dtype=np.float32))
    return np.asarray(image.resize((THUMBNAIL, THUMBNAIL), resample))


def panel_tiles(pixels: np.ndarray, maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The tiles of each image (B x (2 + C) x THUMBNAIL x THUMBNAIL x 3 uint8) from its pixels (B x S x S x
    bands), placed maps (B x C x S x S) and object region (B x S x S): the cutout as shown, each map
    ReLU'd and scaled to its own maximum (grey), the region (white where more than half a tile pixel
    is object)."""
    n, classes = maps.shape[:2]
    tiles = np.zeros((n, 2 + classes, THUMBNAIL, THUMBNAIL, 3), np.uint8)
    for k in range(n):
        shown = Image.fromarray(shown_rgb(pixels[k]))
        tiles[k, 0] = np.asarray(shown.resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BILINEAR))
        for c in range(classes):
            positive = np.clip(maps[k, c], 0.0, None)
            peak = positive.max()
            grey = _resized(positive / peak if peak > 0 else positive, Image.Resampling.BILINEAR)
            tiles[k, 1 + c] = np.round(np.clip(grey, 0, 1) * 255).astype(np.uint8)[..., None]
        inside = _resized(masks[k].astype(np.float32), Image.Resampling.BOX)
        tiles[k, 1 + classes] = np.where(inside > 0.5, 255, 0).astype(np.uint8)[..., None]
    return tiles


class SpriteSheets:
    """Tiles laid out SPRITE_COLUMNS to a row, SHEET_TILES to a sheet, each full sheet encoded as JPEG
    at once (only one sheet of pixels is held); tile ``g`` is on sheet ``g // SHEET_TILES``."""

    def __init__(self) -> None:
        self.sheets: list[bytes] = []
        self.filled = 0
        self.sheet = np.zeros((SHEET_TILES // SPRITE_COLUMNS * THUMBNAIL, SPRITE_COLUMNS * THUMBNAIL, 3), np.uint8)

    def add(self, tiles: np.ndarray) -> None:
        """Append tiles (K x THUMBNAIL x THUMBNAIL x 3 uint8) in order."""
        for tile in tiles:
            r, c = divmod(self.filled, SPRITE_COLUMNS)
            self.sheet[r * THUMBNAIL : (r + 1) * THUMBNAIL, c * THUMBNAIL : (c + 1) * THUMBNAIL] = tile
            self.filled += 1
            if self.filled == SHEET_TILES:
                self._encode()

    def _encode(self) -> None:
        rows = int(np.ceil(self.filled / SPRITE_COLUMNS))
        buffer = io.BytesIO()
        # 4:4:4: subsampled colour would bleed across the tiles' edges
        Image.fromarray(self.sheet[: rows * THUMBNAIL]).save(buffer, "JPEG", quality=90, subsampling=0)
        self.sheets.append(buffer.getvalue())
        self.sheet[:] = 0
        self.filled = 0

    def finish(self) -> list[bytes]:
        """The JPEG sheets (none without a tile)."""
        if self.filled:
            self._encode()
        return self.sheets


def sprite_sheets(
    ids: Sequence[str], parts: Sequence[str | os.PathLike], images: str | os.PathLike, index: str | os.PathLike,
    regions: tuple[Sequence[str | os.PathLike], Sequence[str | os.PathLike]], batch_bytes: int = 2**28,
) -> tuple[list[bytes], list[str]]:  # fmt: skip
    """The sprite sheets of the tiles of ``ids`` (``panel_tiles``) and the ids in the order of their
    tiles: one pass over the audit tables' id and map columns, in batches whose placed maps take
    about ``batch_bytes``. ValueError when an id has no audit row."""
    dataset = audit_dataset(parts)
    meta = AuditMeta.read(dataset)
    packed, rows = open_packed(images), PackedIndex.read(index)
    store = RegionStore.open(*regions, len(rows))
    wanted = pa.array(sorted({str(i) for i in ids}), type=pa.string())
    placed = 4 * len(meta.classes) * packed.shape[1] * packed.shape[2]  # bytes of one image's placed maps
    batch_size = int(np.clip(batch_bytes // placed, 16, 512))
    sheets, order = SpriteSheets(), []
    for batch in audit_batches(dataset, map_columns(meta.classes), batch_size):
        chosen = batch.filter(pc.is_in(batch.column("id"), value_set=wanted))
        if chosen.num_rows:
            pixels, maps, masks = panels_of(chosen, meta, packed, rows, store)
            sheets.add(panel_tiles(pixels, maps, masks).reshape(-1, THUMBNAIL, THUMBNAIL, 3))
            order += chosen.column("id").to_pylist()
    if len(order) != len(wanted) or len(set(order)) != len(order):
        missing = sorted(set(wanted.to_pylist()) - set(order))[:3]
        raise ValueError(f"the audit tables hold {len(order)} rows for the {len(wanted)} images to tile "
                         f"(without a row: {missing}); run the audit again")  # fmt: skip
    return sheets.finish(), order


def plotly_bundle() -> str:
    """The plotly.js bundle of the installed ``plotly`` package."""
    return (resources.files("plotly") / "package_data" / "plotly.min.js").read_text(encoding="utf-8")


def _json_script(data: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' survives as such."""
    text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page_data(points: pd.DataFrame, first_tile: np.ndarray) -> dict[str, Any]:
    """The page's data: columns of the points (NaN as null), the classes and each one's probabilities,
    each point's first tile (-1: none) and the inferno table the page blends maps with."""
    columns = {}
    for name in POINT_COLUMNS:
        values = points[name]
        if values.dtype == bool:
            columns[name] = values.astype(bool).tolist()
        elif pd.api.types.is_numeric_dtype(values):
            columns[name] = [None if not np.isfinite(v) else round(float(v), 5) for v in values.to_numpy(np.float64)]
        else:
            columns[name] = values.astype(str).tolist()
    classes = [c.removeprefix("prob_") for c in points.columns if c.startswith("prob_")]
    inferno = np.round(colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).astype(int)
    return {
        "n": len(points),
        "columns": columns,
        "classes": classes,
        "probs": [np.round(points[f"prob_{c}"].to_numpy(np.float64), 5).tolist() for c in classes],
        "tile": first_tile.tolist(),
        "tiles_per_image": 2 + len(classes),
        "thumbnail": THUMBNAIL,
        "sprite_columns": SPRITE_COLUMNS,
        "sheet_tiles": SHEET_TILES,
        "alpha": OVERLAY_ALPHA,
        "inferno": inferno.ravel().tolist(),
    }


def explorer_html(points: pd.DataFrame, first_tile: np.ndarray, sheets: Sequence[bytes]) -> str:
    """The whole page: plotly.js, the data, the sprite sheets and the page's own script, inlined."""
    template = (resources.files("saliency_audit.report") / "explorer_template.html").read_text(encoding="utf-8")
    urls = ["data:image/jpeg;base64," + base64.b64encode(sheet).decode("ascii") for sheet in sheets]
    values = {
        "N_IMAGES": str(len(points)),
        "SPRITES": _json_script(urls),
        "DATA": _json_script(page_data(points, first_tile)),
        "PLOTLY": plotly_bundle().replace("</script", "<\\/script"),
    }
    return re.sub(r"\{\{([A-Z_]+)\}\}", lambda match: values[match.group(1)], template)  # one pass


def write_explorer(
    pcs: str | os.PathLike, labels: str | os.PathLike, predictions: str | os.PathLike, stats: str | os.PathLike,
    parts: Sequence[str | os.PathLike], images: str | os.PathLike, index: str | os.PathLike,
    regions: tuple[Sequence[str | os.PathLike], Sequence[str | os.PathLike]], max_thumbnails: int,
    out: str | os.PathLike,
) -> tuple[int, int]:  # fmt: skip
    """Write the explorer page of a run to ``out``; return the images shown and those with a thumbnail."""
    points = explorer_points(
        pd.read_parquet(pcs), pd.read_parquet(labels), pd.read_parquet(predictions), pd.read_parquet(stats)
    )
    chosen = choose_thumbnails(points, max_thumbnails)
    sheets, order = sprite_sheets(points["id"].iloc[chosen].tolist(), parts, images, index, regions)
    first_tile = np.full(len(points), -1, dtype=np.int64)
    tiles_per_image = 2 + sum(c.startswith("prob_") for c in points.columns)
    first_tile[pd.Index(points["id"]).get_indexer(order)] = np.arange(len(order)) * tiles_per_image
    with atomic_path(out) as tmp:
        Path(tmp).write_text(explorer_html(points, first_tile, sheets), encoding="utf-8")
    return len(points), int((first_tile >= 0).sum())
