"""Figures of the data stages: the target's distribution over the classes, and the demo's galaxies."""

from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from saliency_audit.data.classes import OUTSIDE
from saliency_audit.report.figures import BAR_COLOUR, CLASS_COLOURS, plt, short_label


def histogram_figure(
    values: pd.Series, target: dict[str, Any], counts: pd.DataFrame, mean: float | None = None
) -> plt.Figure:
    """The target distribution with the bin edges and class counts (bars for a categorical target); for a
    regression, the training mean that divides its two directions (``mean``)."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    per_class = counts[counts["class"] != OUTSIDE]
    if mean is not None:
        ax.axvline(mean, color="#003f5c", lw=1.2)
        ax.annotate(f"training mean {mean:.4g}", (mean, 1), xycoords=("data", "axes fraction"),
                    xytext=(3, -3), textcoords="offset points", va="top", fontsize=8)  # fmt: skip
    if mean is not None and "bins" not in target:
        ax.hist(values, bins=40, color=BAR_COLOUR)
        ax.set_xlabel(target["column"])
    elif "bins" in target:
        ax.hist(values, bins=40, color=BAR_COLOUR)
        edges = target["bins"]
        for edge in edges:
            ax.axvline(edge, color="#ff6361", lw=1, ls="--")
        top = ax.get_ylim()[1] * 1.22
        ax.set_ylim(0, top)
        for lo, hi, name, n, kept in zip(
            edges[:-1], edges[1:], per_class["class"], per_class["catalog"], per_class["kept"]
        ):
            note = "" if kept else " (dropped)"
            ax.text((lo + hi) / 2, top * 0.97, f"{short_label(name)}\n{n}{note}", ha="center", va="top", fontsize=8)
        ax.set_xlabel(target["column"])
    else:
        colours = [CLASS_COLOURS[i % len(CLASS_COLOURS)] for i in range(len(per_class))]
        names = [short_label(name) for name in per_class["class"]]
        positions = range(len(names))  # by position: two labels may look the same once shortened
        ax.bar(positions, per_class["catalog"], color=colours)
        long = sum(map(len, names)) > 60
        ax.set_xticks(positions, names, rotation=30 if long else 0, ha="right" if long else "center")
        ax.set_xlabel(target["column"])
    ax.set_ylabel("Number of images")
    fig.tight_layout()
    return fig


def preview_figure(catalog: pd.DataFrame, image_dir: Path, target: dict[str, Any], per_class: int = 8) -> plt.Figure:
    """A grid of cutouts, one row per class; planted stars are circled."""
    classes = pd.cut(catalog["metallicity"], bins=target["bins"], labels=target["labels"])
    rows = []
    for label in target["labels"]:
        members = catalog[classes == label]
        with_star = members[members["shortcut"] == 1].head(per_class // 2)
        rows.append(pd.concat([with_star, members[members["shortcut"] == 0].head(per_class - len(with_star))]))
    fig, axes = plt.subplots(len(rows), per_class, figsize=(1.6 * per_class, 1.8 * len(rows)), squeeze=False)
    for row_axes, label, members in zip(axes, target["labels"], rows):
        for ax, (_, galaxy) in zip(row_axes, members.iterrows()):
            ax.imshow(Image.open(image_dir / f"{galaxy['objID']}.jpg"))
            ax.set_title(f"Z = {galaxy['metallicity']:.2f}", fontsize=8)
            if galaxy["shortcut"] == 1:
                ax.add_patch(
                    plt.Circle((galaxy["shortcut_x"], galaxy["shortcut_y"]), 5, fill=False, color="#ff6361", lw=1.2)
                )
        for ax in row_axes:
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        row_axes[0].set_ylabel(short_label(label), fontsize=11)
    fig.suptitle("Demo galaxies by metallicity class (circled: planted shortcut star)", fontsize=11)
    fig.tight_layout()
    return fig
