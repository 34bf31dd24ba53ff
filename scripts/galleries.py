"""galleries: image | Grad-CAM of each class, as in the seed's figures, for the images worth looking at.

Three kinds: the most background-focused images of each predicted class, a
random sample (optionally restricted by ``saliency.gallery.where``, a filter on
catalog columns such as ``0.05 < z < 0.08``, see ``catalog_filter``), and the top
losses of the valid split. The object region is outlined in cyan on every panel.
"""

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from saliency_audit.audit.map_geometry import MapGeometry, place
from saliency_audit.audit.tables import audit_dataset, read_audit_metadata, read_cams
from saliency_audit.data.catalog_filter import FilterError, evaluate_filter, parse_filter
from saliency_audit.data.image_io import open_packed, read_rows
from saliency_audit.data.regions import image_sizes, object_regions
from saliency_audit.model.metrics import top_losses
from saliency_audit.report.figures import plt, safe_name, save_figure
from saliency_audit.runtime.job import start_job

TEXT = {"ha": "center", "color": "white", "fontsize": 8}


class GalleryError(ValueError):
    """A gallery setting cannot be applied; the message names the key."""


def most_background_focused(stats: pd.DataFrame, name: str, n: int) -> pd.DataFrame:
    """The ``n`` images predicted as ``name`` with the least map energy on the object."""
    members = stats[(stats["predicted"] == name) & (stats["state"] == "ok")]
    return members.nsmallest(n, ["relative_energy", "energy_in_object"])


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


def gallery_figure(
    chosen: pd.DataFrame, images: np.ndarray, cams: np.ndarray, masks: np.ndarray, classes: list[str], title: str
) -> plt.Figure:
    """One row per image: the image (id on top), then each class's ReLU'd Grad-CAM with its probability."""
    n, size = len(chosen), images.shape[1]
    columns = 1 + len(classes)
    fig, axes = plt.subplots(n, columns, figsize=(2.6 * columns, 2.6 * n), squeeze=False, sharey=True)
    for r, (_, row) in enumerate(chosen.iterrows()):
        axes[r, 0].imshow(images[r])
        axes[r, 0].text(0.5, 0.9, str(row["id"]), transform=axes[r, 0].transAxes, **TEXT)
        verdict = "correct" if row["correct"] else f"true {row['label']}"
        axes[r, 0].text(0.5, 0.06, f"pred {row['predicted']} ({verdict})", transform=axes[r, 0].transAxes, **TEXT)
        for k, name in enumerate(classes, start=1):
            ax = axes[r, k]
            ax.imshow(images[r])
            ax.imshow(np.clip(cams[r, k - 1], 0, None), alpha=0.6, extent=(0, size, size, 0), interpolation="bicubic",
                      cmap="inferno")  # fmt: skip
            state = row.get(f"state_{name}", "ok")
            where = f"on object {row[f'energy_in_object_{name}']:.2f}" if state == "ok" else state.replace("_", " ")
            ax.text(0.5, 0.9, str(name), transform=ax.transAxes, **TEXT)
            ax.text(0.5, 0.06, f"p = {row[f'prob_{name}']:.3f} · {where}", transform=ax.transAxes, **TEXT)
        for ax in axes[r]:
            if masks[r].any():
                ax.contour(masks[r], levels=[0.5], colors="cyan", linewidths=0.7)
            ax.set_axis_off()
    fig.tight_layout()
    height = fig.get_figheight()
    fig.subplots_adjust(wspace=0.02, top=1 - 0.5 / height)
    fig.suptitle(title, fontsize=10, y=1 - 0.15 / height, va="top")
    return fig


def gallery(
    chosen: pd.DataFrame,
    dataset: ds.Dataset,
    images: np.ndarray,
    row_of: pd.Series,
    catalog: pd.DataFrame,
    region: dict[str, Any],
    title: str,
    max_pixels: int,
) -> plt.Figure:
    """Fetch the maps, pixels and regions of ``chosen`` and draw them."""
    meta = read_audit_metadata(dataset.schema)
    classes = meta["classes"]
    ids = chosen["id"].astype(str).tolist()
    table = dataset.to_table(filter=ds.field("id").isin(ids))
    order = pd.Series(np.arange(table.num_rows), index=table.column("id").to_pylist()).loc[ids].to_numpy()
    cams = read_cams(table, classes, meta["map_shape"])[order]
    pixels = read_rows(images, row_of.loc[ids].to_numpy())
    masks, _ = object_regions(region, ids, pixels, catalog, image_sizes(catalog, ids), max_pixels)
    size = pixels.shape[1]
    geometry = MapGeometry.from_dict(meta["map_geometry"])
    up = place(cams.reshape(-1, *cams.shape[2:]), geometry, (size, size)).numpy()
    up = up.reshape(len(ids), len(classes), size, size)
    return gallery_figure(chosen, pixels, up, masks, classes, title)


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    params = snakemake.params
    settings = params.gallery
    dataset = audit_dataset(snakemake.input.parts)
    classes = read_audit_metadata(dataset.schema)["classes"]
    stats = pd.read_parquet(snakemake.input.stats)
    catalog = pd.read_parquet(snakemake.input.clean).set_index("id")
    index = pd.read_parquet(snakemake.input.index)
    row_of = pd.Series(index["row"].to_numpy(), index=index["id"].astype(str))
    images = open_packed(snakemake.input.images)
    out = Path(snakemake.output.galleries)
    out.mkdir(parents=True, exist_ok=True)

    def draw(chosen: pd.DataFrame, title: str, name: str) -> None:
        if chosen.empty:
            print(f"{name}: no image to show", file=sys.stderr)
            return
        figure = gallery(chosen, dataset, images, row_of, catalog, params.region, title, params.max_pixels)
        save_figure(figure, out / name)

    n = settings["n"]
    for k, name in enumerate(classes):
        chosen = most_background_focused(stats, name, n)
        draw(chosen, f"Most background-focused '{name}' predictions", "background-" + safe_name(k, name))
    where = settings.get("where")
    label = f" with {where}" if where else ""
    draw(random_sample(stats, catalog, n, where, settings["seed"]), f"Random images{label}", "random.png")
    draw(top_losses(stats, classes, n), "Top losses of the valid split", "top-losses.png")


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
