"""Likely label problems (rule ``label_problems``): images whose catalog label the model and the
image's neighbours both contradict.

Two independent witnesses, in the spirit of confident learning (Northcutt et al. 2021) and of
cleanlab's neighbour checks:

- *the model*: an image labelled ``i`` is confidently of another class ``j`` when its probability
  of ``j`` reaches ``j``'s threshold, the mean probability of ``j`` over the images of its split
  labelled ``j`` (per class, so a class the model is shy of is not ignored); ``j`` is the most
  probable such class;
- *its neighbours*: of its ``NEIGHBOURS`` nearest images in the model's activation space (the leading
  ``FEATURES`` principal axes of the penultimate activations), most carry the label ``j``.

An image is listed when both point to the same other class. The training split's probabilities
were learnt from these labels and are optimistic (near 1): pooled with them, the thresholds would
sit above what the valid split's images reach, so each split is held to its own thresholds; a wrong
label among the training images is still harder to see, so the two splits are counted apart. For a
binned target, each listed image also gets the distance of its target value to the nearest edge of
its bin and the class across that edge: a value near an edge is more likely a measurement that fell
on the wrong side than a wrong image.
"""

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from saliency_audit.audit.pca import fit_pca, merge_moments, project_dataset
from saliency_audit.audit.tables import audit_dataset, read_predictions
from saliency_audit.data.classes import is_regression

NEIGHBOURS = 10  # nearest images that vote
FEATURES = 32  # leading principal axes of the activations the neighbours are found in
OUTSIDE = "outside"  # the class across an outermost bin edge
COLUMNS = [
    "id", "split", "label", "suggested", "prob_label", "prob_suggested", "threshold_suggested",
    "neighbours_suggested", "target", "edge_distance", "class_across_edge",
]  # fmt: skip


def class_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per class ``j``: the mean probability of ``j`` over the images labelled ``j`` (NaN if none)."""
    return np.array([probs[labels == j, j].mean() if (labels == j).any() else np.nan for j in range(probs.shape[1])])


def split_thresholds(probs: np.ndarray, labels: np.ndarray, splits: np.ndarray) -> np.ndarray:
    """Per image and class (N x C): ``class_thresholds`` among the images of its split; the pooled
    threshold where its split holds no image labelled with the class."""
    pooled = class_thresholds(probs, labels)
    out = np.empty_like(probs, dtype=np.float64)
    for split in np.unique(splits):
        rows = splits == split
        own = class_thresholds(probs[rows], labels[rows])
        out[rows] = np.where(np.isnan(own), pooled, own)
    return out


def confident_other(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per image: the most probable class other than its label whose probability reaches that class's
    threshold (``thresholds``: per class, C, or per image and class, N x C), or -1 when none does."""
    reaching = probs >= thresholds
    reaching[np.arange(len(labels)), labels] = False
    masked = np.where(reaching, probs, -np.inf)
    best = masked.argmax(axis=1)
    return np.where(np.isfinite(masked[np.arange(len(labels)), best]), best, -1)


def neighbour_votes(features: np.ndarray, labels: np.ndarray, n_classes: int, k: int = NEIGHBOURS) -> np.ndarray:
    """Per image and class: the share of its ``k`` nearest other images (Euclidean) carrying that label."""
    k = min(k, len(features) - 1)
    if k < 1:
        return np.zeros((len(features), n_classes))
    _, index = NearestNeighbors(n_neighbors=k + 1).fit(features).kneighbors(features)
    others = np.array([row[row != i][:k] for i, row in enumerate(index)])  # itself out, even among ties
    votes = np.zeros((len(features), n_classes))
    np.add.at(votes, (np.repeat(np.arange(len(features)), k), labels[others].ravel()), 1.0 / k)
    return votes


def nearest_edges(values: np.ndarray, bins: list[float], bin_labels: list[str]) -> tuple[np.ndarray, list[str]]:
    """Per target value: the distance to the nearest edge of its bin (right-closed, as ``pd.cut``) and
    the bin label across that edge (``OUTSIDE`` beyond the outermost edges)."""
    edges = np.asarray(bins, dtype=np.float64)
    position = np.clip(np.searchsorted(edges, values, side="left") - 1, 0, len(edges) - 2)  # bin of each value
    lower, upper = edges[position], edges[position + 1]
    to_lower, to_upper = values - lower, upper - values
    below = to_lower <= to_upper
    across = np.where(below, position - 1, position + 1)
    names = [bin_labels[j] if 0 <= j < len(bin_labels) else OUTSIDE for j in across]
    return np.where(below, to_lower, to_upper), names


def label_problem_table(
    rows: pd.DataFrame,
    probs: np.ndarray,
    classes: list[str],
    features: np.ndarray,
    bins: list[float] | None = None,
    bin_labels: list[str] | None = None,
) -> pd.DataFrame:
    """The likely label problems among ``rows`` (id, split, class, target; in the order of ``probs``,
    N x C in ``classes``' order, and ``features``, N x F), most confident contradiction first."""
    labels = pd.Categorical(rows["class"].astype(str), categories=classes).codes.astype(np.int64)
    thresholds = split_thresholds(probs, labels, rows["split"].astype(str).to_numpy())
    other = confident_other(probs, labels, thresholds)
    votes = neighbour_votes(features, labels, len(classes))
    majority = votes.argmax(axis=1)
    listed = np.flatnonzero((other >= 0) & (majority == other) & (votes[np.arange(len(labels)), majority] > 0.5))
    suggested = other[listed]
    table = pd.DataFrame(
        {
            "id": rows["id"].to_numpy()[listed],
            "split": rows["split"].to_numpy()[listed],
            "label": np.asarray(classes, dtype=object)[labels[listed]],
            "suggested": np.asarray(classes, dtype=object)[suggested],
            "prob_label": probs[listed, labels[listed]],
            "prob_suggested": probs[listed, suggested],
            "threshold_suggested": thresholds[listed, suggested],
            "neighbours_suggested": votes[listed, suggested],
            "target": rows["target"].to_numpy()[listed],
        }
    )
    if bins is not None and bin_labels is not None:
        distance, across = nearest_edges(table["target"].to_numpy(dtype=np.float64), bins, bin_labels)
        table["edge_distance"], table["class_across_edge"] = distance, across
    else:
        table["edge_distance"], table["class_across_edge"] = np.nan, ""
    order = np.lexsort((table["id"], -table["neighbours_suggested"], table["prob_label"]))
    return table.iloc[order].reset_index(drop=True)[COLUMNS]


def find_label_problems(
    parts: Sequence[str | os.PathLike],
    moments: Sequence[str | os.PathLike],
    labels_path: str | os.PathLike,
    target: dict[str, Any],
) -> pd.DataFrame:
    """The label-problem table of a run: probabilities from the audit tables, neighbours among the
    activations' leading principal axes, bin edges from ``target`` when it is binned."""
    labels = pd.read_parquet(labels_path)
    predictions, classes = read_predictions(parts, labels, is_regression(target))
    merged = merge_moments(moments)
    fit = fit_pca(merged, min(FEATURES, len(merged.mean), merged.count), whiten=False)
    pcs = project_dataset(audit_dataset(parts), fit).set_index("id").loc[labels["id"].astype(str)]
    probs = predictions[[f"prob_{c}" for c in classes]].to_numpy(dtype=np.float64)
    binned = "bins" in target and not is_regression(target)
    return label_problem_table(
        labels,
        probs,
        classes,
        pcs.to_numpy(dtype=np.float64),
        target["bins"] if binned else None,
        list(target["labels"]) if binned else None,
    )


def count_by_split(table: pd.DataFrame) -> dict[str, int]:
    """How many likely label problems each split holds."""
    return {split: int((table["split"] == split).sum()) for split in ("train", "valid")}
