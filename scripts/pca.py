"""pca: exact PCA of the penultimate activations from streamed moments, and the seed's figures.

The covariance comes from the merged per-shard moments (no activation matrix
is ever held in memory); components are its leading eigenvectors, signed like
scikit-learn's (largest loading positive). Projection then streams the audit
tables batch by batch.
"""

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
from matplotlib.colors import ListedColormap
from matplotlib.offsetbox import AnnotationBbox, OffsetImage

from saliency_audit.audit.moments import Moments
from saliency_audit.audit.tables import audit_batches, audit_dataset, read_list_column
from saliency_audit.data.image_io import open_packed, read_rows
from saliency_audit.report.figures import BAR_COLOUR, CLASS_COLOURS, plt, save_figure
from saliency_audit.runtime.atomic_io import write_json, write_parquet
from saliency_audit.runtime.job import start_job


@dataclass
class PCAFit:
    mean: np.ndarray  # F
    components: np.ndarray  # K x F
    explained_variance: np.ndarray  # K
    explained_variance_ratio: np.ndarray  # K
    whiten: bool
    n_samples: int

    def transform(self, x: np.ndarray) -> np.ndarray:
        projected = (np.asarray(x, dtype=np.float64) - self.mean) @ self.components.T
        return projected / np.sqrt(self.explained_variance) if self.whiten else projected

    def to_json(self) -> dict[str, Any]:
        return {
            "n_samples": self.n_samples,
            "whiten": self.whiten,
            "mean": self.mean.tolist(),
            "components": self.components.tolist(),
            "explained_variance": self.explained_variance.tolist(),
            "explained_variance_ratio": self.explained_variance_ratio.tolist(),
        }


def fit_pca(moments: Moments, n_components: int, whiten: bool) -> PCAFit:
    """Leading eigenvectors of the covariance; equal to scikit-learn's PCA(n_components, whiten)."""
    n_features = len(moments.mean)
    if n_components > min(n_features, moments.count):
        raise ValueError(
            f"pca.components={n_components} exceeds what {moments.count} activation vectors of "
            f"length {n_features} support"
        )
    eigenvalues, eigenvectors = np.linalg.eigh(moments.covariance())
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues = np.clip(eigenvalues[order], 0.0, None)
    components = eigenvectors[:, order[:n_components]].T
    signs = np.sign(components[np.arange(n_components), np.abs(components).argmax(axis=1)])
    components *= signs[:, None]
    total = eigenvalues.sum()
    return PCAFit(
        mean=moments.mean,
        components=components,
        explained_variance=eigenvalues[:n_components],
        explained_variance_ratio=eigenvalues[:n_components] / total if total > 0 else eigenvalues[:n_components],
        whiten=whiten,
        n_samples=moments.count,
    )


def project_dataset(dataset: ds.Dataset, fit: PCAFit, batch_size: int = 8192) -> pd.DataFrame:
    """id, pc1..pcK for every audited image, reading the activations a batch at a time.

    The projections go into one array allocated up front and the ids stay Arrow
    arrays: a small frame kept per batch would pin the heap under the next
    batch's temporaries, and the job would grow with the number of images.
    """
    values = np.empty((dataset.count_rows(), len(fit.components)))
    ids, start = [], 0
    for batch in audit_batches(dataset, ["id", "activation"], batch_size):
        if batch.num_rows == 0:
            continue
        values[start : start + batch.num_rows] = fit.transform(read_list_column(batch, "activation"))
        ids.append(batch.column("id"))
        start += batch.num_rows
    frame = pd.DataFrame(values[:start], columns=[f"pc{k + 1}" for k in range(values.shape[1])])
    frame.insert(0, "id", pa.chunked_array(ids, type=pa.string()).to_numpy() if ids else [])
    return frame


@dataclass(frozen=True)
class ColourScale:
    """How the scatter colours galaxies: by target value (numeric target) or by class (categorical)."""

    classes: list[str]
    centres: dict[str, float] | None  # numeric target: the bin centre of every label
    limits: tuple[float, float] | None  # numeric target: the outer bin edges

    @classmethod
    def from_target(cls, target: dict[str, Any], classes: list[str]) -> "ColourScale":
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
        if self.centres is not None:
            return points["target"].to_numpy(dtype=float)
        return self.class_value(points["label"])

    def style(self) -> dict[str, Any]:
        if self.limits is None:
            colours = [CLASS_COLOURS[k % len(CLASS_COLOURS)] for k in range(len(self.classes))]
            return {"cmap": ListedColormap(colours), "vmin": -0.5, "vmax": len(self.classes) - 0.5}
        return {"cmap": "Spectral_r", "vmin": self.limits[0], "vmax": self.limits[1]}


def scatter_figure(points: pd.DataFrame, scale: ColourScale, target: str) -> plt.Figure:
    """The seed's PCA scatter: outer colour = true value, inner dot = predicted class."""
    pairs = [("pc1", "pc2"), ("pc1", "pc3")] if "pc3" in points else [("pc1", "pc2")]
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.2 * len(pairs) + 1.2, 4.2), squeeze=False)
    style = scale.style()
    outer = scale.outer_value(points)
    inner = scale.class_value(points["predicted"])
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
        bar.set_ticks(range(len(scale.classes)), labels=scale.classes)
    return fig


def robust_limits(values: pd.Series, margin: float = 0.05) -> tuple[float, float]:
    """Axis limits holding the central 98% of the points, so a few outliers do not squash the rest."""
    lo, hi = np.percentile(values, [1, 99])
    pad = (hi - lo) * margin if hi > lo else 1.0
    return float(lo - pad), float(hi + pad)


def spread_sample(points: pd.DataFrame, cells: int = 12) -> pd.DataFrame:
    """At most one galaxy per cell of a regular grid over the PC1-PC2 view, so thumbnails do not pile up."""
    keep = pd.Series(True, index=points.index)
    grid = {}
    for axis in ("pc1", "pc2"):
        lo, hi = robust_limits(points[axis], margin=0.0)
        keep &= points[axis].between(lo, hi)
        grid[axis] = ((points[axis] - lo) / (hi - lo) * cells).clip(0, cells - 1).astype(int)
    inside = points[keep]
    return inside.groupby([grid["pc1"][keep], grid["pc2"][keep]], sort=True).head(1)


def thumbnail_figure(points: pd.DataFrame, images: np.ndarray, classes: list[str]) -> plt.Figure:
    """Galaxy images placed at their PC1-PC2 position, framed in their true class colour."""
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.scatter(points["pc1"], points["pc2"], s=0)
    sample = spread_sample(points)
    for (_, row), thumbnail in zip(sample.iterrows(), read_rows(images, sample["row"].to_numpy())):
        colour = CLASS_COLOURS[classes.index(row["label"]) % len(CLASS_COLOURS)]
        box = AnnotationBbox(
            OffsetImage(thumbnail, zoom=0.5), (row["pc1"], row["pc2"]), frameon=True,
            pad=0.1, bboxprops={"edgecolor": colour, "linewidth": 2},
        )  # fmt: skip
        ax.add_artist(box)
    handles = [plt.Line2D([], [], color=CLASS_COLOURS[k % len(CLASS_COLOURS)], lw=3) for k in range(len(classes))]
    ax.legend(handles, classes, title="true class", frameon=False, loc="upper right", bbox_to_anchor=(1.18, 1))
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


def figure_points(pcs: pd.DataFrame, dataset: ds.Dataset, labels: pd.DataFrame, limit: int = 3000) -> pd.DataFrame:
    """Valid-split galaxies with their PCs, true target, label, prediction and packed row (a seeded sample)."""
    audit = dataset.to_table(columns=["id", "split", "label", "predicted"]).to_pandas()
    points = pcs.merge(audit, on="id").merge(labels[["id", "target"]].assign(row=np.arange(len(labels))), on="id")
    points = points[points["split"] == "valid"]
    return points.sample(n=min(limit, len(points)), random_state=0) if len(points) > limit else points


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    params = snakemake.params
    moments = Moments.empty(0)
    for path in snakemake.input.moments:
        moments = moments.merge(Moments.load(path))
    fit = fit_pca(moments, params.components, params.whiten)
    dataset = audit_dataset(snakemake.input.parts)
    pcs = project_dataset(dataset, fit)
    write_parquet(pcs, snakemake.output.table)
    write_json(fit.to_json(), snakemake.output.summary)

    labels = pd.read_parquet(snakemake.input.labels)
    classes = list(labels["class"].cat.categories)
    scale = ColourScale.from_target(params.target, classes)
    points = figure_points(pcs, dataset, labels)
    save_figure(scatter_figure(points, scale, params.target["column"]), snakemake.output.scatter)
    save_figure(thumbnail_figure(points, open_packed(snakemake.input.images), classes), snakemake.output.thumbnails)
    save_figure(variance_figure(fit), snakemake.output.variance)
    print(f"explained variance ratio: {np.round(fit.explained_variance_ratio, 4).tolist()}", file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
