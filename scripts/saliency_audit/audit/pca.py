"""pca: exact PCA of the penultimate activations from streamed moments, and the points of the seed's figures.

The covariance comes from the merged per-shard moments (no activation matrix
is ever held in memory); components are its leading eigenvectors, signed like
scikit-learn's (largest loading positive). Projection then streams the audit
tables batch by batch. The figures themselves are drawn in ``report.pca_figures``.
"""

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from saliency_audit.audit.moments import Moments
from saliency_audit.audit.tables import audit_batches, read_list_column
from saliency_audit.data.classes import DIRECTIONS, predicted_values, training_mean


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


def merge_moments(paths: Iterable[str | os.PathLike]) -> Moments:
    """The moments of every audit shard's activations as one, so the PCA sees the whole dataset."""
    moments = Moments.empty(0)
    for path in paths:
        moments = moments.merge(Moments.load(path))
    return moments


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


def figure_points(
    pcs: pd.DataFrame, dataset: ds.Dataset, labels: pd.DataFrame, limit: int = 3000, regression: bool = False
) -> pd.DataFrame:
    """Valid-split galaxies with their PCs, true target, label, prediction and packed row (a seeded sample);
    a ``regression``'s with its ``predicted_value`` too."""
    logits = [f"logit_{c}" for c in DIRECTIONS] if regression else []
    audit = dataset.to_table(columns=["id", "split", "label", "predicted", *logits]).to_pandas()
    if regression:
        audit["predicted_value"] = predicted_values(audit[logits].to_numpy(), training_mean(labels))
    points = pcs.merge(audit, on="id").merge(labels[["id", "target"]].assign(row=np.arange(len(labels))), on="id")
    points = points[points["split"] == "valid"]
    return points.sample(n=min(limit, len(points)), random_state=0) if len(points) > limit else points


def read_labels(path: str | os.PathLike) -> tuple[pd.DataFrame, list[str]]:
    """The class labels table and its classes in category order, which the figures' colours follow."""
    labels = pd.read_parquet(path)
    return labels, list(labels["class"].cat.categories)


def describe_fit(fit: PCAFit) -> str:
    """The log line with the explained variance ratio of each component."""
    return f"explained variance ratio: {np.round(fit.explained_variance_ratio, 4).tolist()}"
