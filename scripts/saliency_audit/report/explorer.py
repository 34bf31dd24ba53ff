"""The audit explorer (rule ``explorer``): one self-contained HTML page, every audited image a point
at its PCA position, coloured by a choice of label, prediction, flag, cluster or statistic; hovering
a point shows its cutout under the predicted class's Grad-CAM (inferno, alpha 0.6) and its values.

The page works offline: the plotly.js bundle that the ``plotly`` package ships, the data and one JPEG
sprite sheet of thumbnails are inlined; nothing is requested from any host. Catalog strings reach
the page only as JSON data (``<`` escaped) and are shown with ``textContent``, never parsed as HTML.
Above ``max_thumbnails`` images, flagged images get thumbnails first, then a sample stratified by
label and prediction; the others are points only.
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
import pyarrow.dataset as ds
from matplotlib import colormaps
from PIL import Image

from saliency_audit.audit.map_geometry import place
from saliency_audit.audit.tables import AuditMeta, audit_dataset, read_cams
from saliency_audit.data.image_io import open_packed, read_rows, shown_rgb
from saliency_audit.data.packing import PackedIndex
from saliency_audit.runtime.atomic_io import atomic_path

THUMBNAIL = 48  # px of a thumbnail in the sprite sheet
SPRITE_COLUMNS = 64  # thumbnails per sprite row
OVERLAY_ALPHA = 0.6
POINT_COLUMNS = [
    "id", "split", "label", "predicted", "correct", "probability", "target", "pc1", "pc2", "pc3",
    "relative_energy", "background_focused", "background_reliance", "background_reliant", "cluster",
]  # fmt: skip
FLAGS = ("background_focused", "background_reliant")


def explorer_points(
    pcs: pd.DataFrame, labels: pd.DataFrame, predictions: pd.DataFrame, stats: pd.DataFrame
) -> pd.DataFrame:
    """One row per audited image (``pcs``' order): its PCA position, label, prediction and the
    saliency statistics where it has them (NaN / False where it has none)."""
    points = pcs.merge(labels[["id", "split", "target"]], on="id", how="left", validate="one_to_one")
    predicted = predictions.set_index("id").loc[points["id"]]
    probs = predicted[[c for c in predicted.columns if c.startswith("prob_")]].to_numpy()
    points["label"] = predicted["label"].astype(str).to_numpy()
    points["predicted"] = predicted["predicted"].astype(str).to_numpy()
    points["correct"] = points["label"] == points["predicted"]
    points["probability"] = probs.max(axis=1)
    wanted = [c for c in ("relative_energy", *FLAGS, "background_reliance", "cluster") if c in stats.columns]
    points = points.merge(stats[["id", *wanted]], on="id", how="left", validate="one_to_one")
    for column in POINT_COLUMNS:
        if column not in points.columns:
            points[column] = np.nan
    for flag in FLAGS:
        points[flag] = points[flag].fillna(False).astype(bool)
    if "pc3" not in pcs.columns:
        points["pc3"] = 0.0
    return points[POINT_COLUMNS].reset_index(drop=True)


def choose_thumbnails(points: pd.DataFrame, limit: int, seed: int = 0) -> np.ndarray:
    """The rows of ``points`` that get a thumbnail (sorted): all when there are at most ``limit``;
    else the flagged first, then a sample of the rest stratified by label and prediction."""
    if len(points) <= limit:
        return np.arange(len(points))
    flagged = np.flatnonzero(points[list(FLAGS)].any(axis=1).to_numpy())
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(flagged)[:limit]
    room = limit - len(chosen)
    if room > 0:
        rest = points.drop(index=flagged)
        groups = rest.groupby(["label", "predicted"], sort=True).indices
        share = room / len(rest)
        picks = [
            rng.permutation(rest.index.to_numpy()[rows])[: int(np.ceil(len(rows) * share))] for rows in groups.values()
        ]
        extra = np.concatenate(picks) if picks else np.empty(0, np.int64)
        chosen = np.concatenate([chosen, rng.permutation(extra)[:room]])
    return np.sort(chosen.astype(np.int64))


def overlay(pixels: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """Thumbnails (B x THUMBNAIL x THUMBNAIL x 3 uint8) of ``pixels`` (B x S x S x C) under their placed
    maps (B x S x S; ReLU'd and scaled to their own maximum), inferno at alpha 0.6 like the galleries."""
    positive = np.clip(maps, 0.0, None)
    peak = positive.reshape(len(maps), -1).max(axis=1)
    scaled = positive / np.where(peak > 0, peak, 1.0)[:, None, None]
    coloured = colormaps["inferno"](scaled)[..., :3]
    tiles = []
    for image, heat in zip(pixels, coloured):
        blend = (1 - OVERLAY_ALPHA) * shown_rgb(image).astype(np.float64) / 255.0 + OVERLAY_ALPHA * heat
        tile = Image.fromarray(np.clip(np.round(blend * 255), 0, 255).astype(np.uint8))
        tiles.append(np.asarray(tile.resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BILINEAR)))
    return np.stack(tiles) if tiles else np.zeros((0, THUMBNAIL, THUMBNAIL, 3), np.uint8)


def thumbnails(
    ids: Sequence[str], predicted: Sequence[str], parts: Sequence[str | os.PathLike], images: str | os.PathLike,
    index: str | os.PathLike, chunk: int = 512,
) -> np.ndarray:  # fmt: skip
    """The overlaid thumbnails of ``ids`` (the predicted class's map), in that order, a chunk at a time."""
    dataset = audit_dataset(parts)
    meta = AuditMeta.read(dataset)
    packed, rows = open_packed(images), PackedIndex.read(index)
    out = np.zeros((len(ids), THUMBNAIL, THUMBNAIL, 3), np.uint8)
    for start in range(0, len(ids), chunk):
        part = list(ids[start : start + chunk])
        table = dataset.to_table(filter=ds.field("id").isin(part))
        order = pd.Series(np.arange(table.num_rows), index=table.column("id").to_pylist()).loc[part].to_numpy()
        cams = read_cams(table, meta.classes, meta.map_shape)[order]
        which = np.array([meta.classes.index(p) for p in predicted[start : start + chunk]])
        chosen = cams[np.arange(len(part)), which]
        pixels = read_rows(packed, rows.rows(part))
        size = pixels.shape[1]
        out[start : start + len(part)] = overlay(pixels, place(chosen, meta.geometry, (size, size)).numpy())
    return out


def sprite_sheet(tiles: np.ndarray) -> bytes:
    """The thumbnails laid out SPRITE_COLUMNS to a row, as one JPEG."""
    rows = max(1, int(np.ceil(len(tiles) / SPRITE_COLUMNS)))
    sheet = np.zeros((rows * THUMBNAIL, SPRITE_COLUMNS * THUMBNAIL, 3), np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, SPRITE_COLUMNS)
        sheet[r * THUMBNAIL : (r + 1) * THUMBNAIL, c * THUMBNAIL : (c + 1) * THUMBNAIL] = tile
    buffer = io.BytesIO()
    Image.fromarray(sheet).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def plotly_bundle() -> str:
    """The plotly.js bundle of the installed ``plotly`` package."""
    return (resources.files("plotly") / "package_data" / "plotly.min.js").read_text(encoding="utf-8")


def _json_script(data: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' survives as such."""
    text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page_data(points: pd.DataFrame, tiles: np.ndarray) -> dict[str, Any]:
    """The page's data: columns of the points (NaN as null) and each point's tile (-1: none)."""
    columns = {}
    for name in POINT_COLUMNS:
        values = points[name]
        if values.dtype == bool:
            columns[name] = values.astype(bool).tolist()
        elif pd.api.types.is_numeric_dtype(values):
            columns[name] = [None if not np.isfinite(v) else round(float(v), 5) for v in values.to_numpy(np.float64)]
        else:
            columns[name] = values.astype(str).tolist()
    return {
        "n": len(points),
        "columns": columns,
        "tile": tiles.tolist(),
        "thumbnail": THUMBNAIL,
        "sprite_columns": SPRITE_COLUMNS,
    }


def explorer_html(points: pd.DataFrame, tile_of_point: np.ndarray, sprite: bytes) -> str:
    """The whole page: plotly.js, the data, the sprite sheet and the page's own script, inlined."""
    template = (resources.files("saliency_audit.report") / "explorer_template.html").read_text(encoding="utf-8")
    values = {
        "N_IMAGES": str(len(points)),
        "SPRITE": "data:image/jpeg;base64," + base64.b64encode(sprite).decode("ascii"),
        "DATA": _json_script(page_data(points, tile_of_point)),
        "PLOTLY": plotly_bundle().replace("</script", "<\\/script"),
    }
    return re.sub(r"\{\{([A-Z_]+)\}\}", lambda match: values[match.group(1)], template)  # one pass


def write_explorer(
    pcs: str | os.PathLike, labels: str | os.PathLike, predictions: str | os.PathLike, stats: str | os.PathLike,
    parts: Sequence[str | os.PathLike], images: str | os.PathLike, index: str | os.PathLike, max_thumbnails: int,
    out: str | os.PathLike,
) -> tuple[int, int]:  # fmt: skip
    """Write the explorer page of a run to ``out``; return the images shown and those with a thumbnail."""
    points = explorer_points(
        pd.read_parquet(pcs), pd.read_parquet(labels), pd.read_parquet(predictions), pd.read_parquet(stats)
    )
    chosen = choose_thumbnails(points, max_thumbnails)
    tiles = thumbnails(
        points["id"].iloc[chosen].tolist(), points["predicted"].iloc[chosen].tolist(), parts, images, index
    )
    tile_of_point = np.full(len(points), -1, dtype=np.int64)
    tile_of_point[chosen] = np.arange(len(chosen))
    with atomic_path(out) as tmp:
        Path(tmp).write_text(explorer_html(points, tile_of_point, sprite_sheet(tiles)), encoding="utf-8")
    return len(points), len(chosen)
