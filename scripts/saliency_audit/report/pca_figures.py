"""The PCA stage's figures: the seed's scatter, the thumbnails at their PC1-PC2 position, the explained variance."""

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.offsetbox import AnnotationBbox, OffsetImage

from saliency_audit.audit.pca import PCAFit, robust_limits, spread_sample
from saliency_audit.data.image_io import read_rows, shown_rgb
from saliency_audit.report.figures import BAR_COLOUR, CLASS_COLOURS, plt, short_label


@dataclass(frozen=True)
class ColourScale:
    """How the scatter colours galaxies: by target value (numeric target) or by class (categorical); a
    regression by its true (outer) and predicted (inner) values."""

    classes: list[str]
    centres: dict[str, float] | None  # numeric target: the bin centre of every label
    limits: tuple[float, float] | None  # numeric target: the outer bin edges
    regression: bool = False

    @classmethod
    def from_target(cls, target: dict[str, Any], classes: list[str], values: pd.Series | None = None) -> "ColourScale":
        """``values``: a regression's target values, whose central 98% span the colours."""
        if target.get("task") == "regression" and values is not None:
            lo, hi = np.percentile(values.to_numpy(dtype=float), [1, 99])
            return cls(classes, None, (float(lo), float(hi)), regression=True)
        if "bins" not in target:
            return cls(classes, None, None)
        bins = target["bins"]
        centres = {label: (lo + hi) / 2 for label, lo, hi in zip(target["labels"], bins[:-1], bins[1:])}
        return cls(classes, centres, (bins[0], bins[-1]))

    def class_value(self, names: pd.Series) -> np.ndarray:
        """The colour value of a class: its bin centre (numeric target) or its index."""
        mapping = self.centres if self.centres is not None else {c: k for k, c in enumerate(self.classes)}
        return names.astype(str).map(mapping).to_numpy(dtype=float)

    def outer_value(self, points: pd.DataFrame) -> np.ndarray:
        """The true target value, or the true class for a categorical target."""
        if self.centres is not None or self.regression:
            return points["target"].to_numpy(dtype=float)
        return self.class_value(points["label"])

    def inner_value(self, points: pd.DataFrame) -> np.ndarray:
        """The predicted value of a regression, the predicted class's colour value otherwise."""
        if self.regression:
            return points["predicted_value"].to_numpy(dtype=float)
        return self.class_value(points["predicted"])

    def style(self) -> dict[str, Any]:
        if self.limits is None:
            colours = [CLASS_COLOURS[k % len(CLASS_COLOURS)] for k in range(len(self.classes))]
            return {"cmap": ListedColormap(colours), "vmin": -0.5, "vmax": len(self.classes) - 0.5}
        return {"cmap": "Spectral_r", "vmin": self.limits[0], "vmax": self.limits[1]}


def scatter_figure(points: pd.DataFrame, scale: ColourScale, target: str) -> plt.Figure:
    """The seed's PCA scatter: outer colour = true value, inner dot = predicted class (value, for a regression)."""
    pairs = [("pc1", "pc2"), ("pc1", "pc3")] if "pc3" in points else [("pc1", "pc2")]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.2 * len(pairs) + 1.2, 4.2), squeeze=False)
    style = scale.style()
    outer = scale.outer_value(points)
    inner = scale.inner_value(points)
    for ax, (x, y) in zip(axes[0], pairs):
        ax.scatter(points[x], points[y], s=36, c=outer, **style, linewidths=0)
        mappable = ax.scatter(points[x], points[y], s=7, c=inner, **style, linewidths=0)
        ax.set_xlim(*robust_limits(points[x]))
        ax.set_ylim(*robust_limits(points[y]))
        ax.set_xlabel(f"PCA {x[2:]}")
        ax.set_ylabel(f"PCA {y[2:]}")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.98, 0.03, "predicted (inner)\ntrue (outer)", transform=ax.transAxes, ha="right", fontsize=8)
    bar = fig.colorbar(mappable, ax=axes[0].tolist())
    bar.set_label(target if scale.limits else "class")
    if scale.limits is None:
        bar.set_ticks(range(len(scale.classes)), labels=[short_label(name) for name in scale.classes])
    return fig


def thumbnail_figure(points: pd.DataFrame, images: np.ndarray, classes: list[str]) -> plt.Figure:
    """Galaxy images placed at their PC1-PC2 position, framed in their true class colour."""
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.scatter(points["pc1"], points["pc2"], s=0)
    sample = spread_sample(points)
    for (_, row), thumbnail in zip(sample.iterrows(), read_rows(images, sample["row"].to_numpy())):
        colour = CLASS_COLOURS[classes.index(row["label"]) % len(CLASS_COLOURS)]
        box = AnnotationBbox(
            OffsetImage(shown_rgb(thumbnail), zoom=0.5), (row["pc1"], row["pc2"]), frameon=True,
            pad=0.1, bboxprops={"edgecolor": colour, "linewidth": 2},
        )  # fmt: skip
        ax.add_artist(box)
    handles = [plt.Line2D([], [], color=CLASS_COLOURS[k % len(CLASS_COLOURS)], lw=3) for k in range(len(classes))]
    names = [short_label(name) for name in classes]
    ax.legend(handles, names, title="true class", frameon=False, loc="upper right", bbox_to_anchor=(1.18, 1))
    ax.set_xlim(*robust_limits(points["pc1"], margin=0.08))
    ax.set_ylim(*robust_limits(points["pc2"], margin=0.08))
    ax.set_xlabel("PCA 1")
    ax.set_ylabel("PCA 2")
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def variance_figure(fit: PCAFit) -> plt.Figure:
    k = np.arange(1, len(fit.explained_variance_ratio) + 1)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.bar(k, fit.explained_variance_ratio, color=BAR_COLOUR, label="component")
    ax.plot(k, np.cumsum(fit.explained_variance_ratio), "o-", color="#ffa600", label="cumulative")
    ax.set_xticks(k)
    ax.set_xlabel("Principal component")
    ax.set_ylabel("Explained variance ratio")
    ax.set_ylim(0, 1.02)
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig
