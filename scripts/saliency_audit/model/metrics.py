"""Classification metrics on predicted probabilities and regression metrics on predicted values, in numpy
(checked against scikit-learn).

Two classes: F1 and the ROC curve are for the second class as positive (as
scikit-learn's ``pos_label=1``). More classes: macro F1 and one-vs-rest macro
ROC AUC.
"""

from typing import Any

import numpy as np
import pandas as pd


def confusion(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts with true classes as rows and predicted classes as columns."""
    return np.bincount(labels * n_classes + predicted, minlength=n_classes**2).reshape(n_classes, n_classes)


def f1_scores(matrix: np.ndarray) -> np.ndarray:
    """Per-class F1 from a confusion matrix; 0 where a class is never true nor predicted."""
    tp = np.diag(matrix).astype(float)
    denominator = matrix.sum(axis=0) + matrix.sum(axis=1)
    return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank (scipy.stats.rankdata's default)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)
    return (last - (counts - 1) / 2.0)[inverse.reshape(-1)]


def binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the Mann-Whitney statistic, ties counted half."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def tpr_at_fpr(positive: np.ndarray, scores: np.ndarray, fpr: float = 0.05) -> float:
    """True-positive rate of the strictest cut ``score > t`` whose false-positive rate is at most ``fpr``."""
    positive = np.asarray(positive, dtype=bool)
    negatives = np.sort(np.asarray(scores)[~positive])[::-1]
    if positive.sum() == 0 or len(negatives) == 0:
        return float("nan")
    allowed = int(np.floor(fpr * len(negatives)))  # negatives that may lie above the cut
    cut = negatives[allowed] if allowed < len(negatives) else -np.inf
    return float((np.asarray(scores)[positive] > cut).mean())


def roc_curve(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    order = np.argsort(-scores, kind="stable")
    hits = positive[order].astype(float)
    distinct = np.r_[np.flatnonzero(np.diff(scores[order])), len(scores) - 1]
    tps = np.cumsum(hits)[distinct]
    fps = (distinct + 1) - tps
    return np.r_[0.0, fps / max(fps[-1], 1)], np.r_[0.0, tps / max(tps[-1], 1)]


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """accuracy, roc_auc, f1 and the confusion matrix of ``probs`` (N x classes) against ``labels``."""
    n_classes = probs.shape[1]
    predicted = probs.argmax(axis=1)
    matrix = confusion(labels, predicted, n_classes)
    f1 = f1_scores(matrix)
    if n_classes == 2:
        auc = binary_auc(labels == 1, probs[:, 1])
        f1_value = f1[1]
    else:
        auc = float(np.mean([binary_auc(labels == k, probs[:, k]) for k in range(n_classes)]))
        f1_value = f1.mean()
    return {
        "accuracy": float((predicted == labels).mean()),
        "roc_auc": auc,
        "f1": float(f1_value),
        "confusion_matrix": matrix.tolist(),
    }


def regression_metrics(values: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """rmse, mae, r2 (1 - residual / total sum of squares), nmad (1.4826 times the median absolute
    deviation of the residuals from their median: the robust scatter used for photometric
    redshifts and abundances) and bias (the mean residual, predicted minus true)."""
    values, predicted = np.asarray(values, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    residuals = predicted - values
    total = float(((values - values.mean()) ** 2).sum()) if len(values) else 0.0
    return {
        "rmse": float(np.sqrt(np.mean(residuals**2))),
        "mae": float(np.mean(np.abs(residuals))),
        "r2": 1.0 - float((residuals**2).sum()) / total if total > 0 else float("nan"),
        "nmad": float(1.4826 * np.median(np.abs(residuals - np.median(residuals)))),
        "bias": float(residuals.mean()),
    }


def top_losses(predictions: pd.DataFrame, classes: list[str], n: int) -> pd.DataFrame:
    """The valid images the model is most confidently wrong about (highest cross-entropy)."""
    valid = predictions[predictions["split"] == "valid"].copy()
    true_prob = valid[[f"prob_{c}" for c in classes]].to_numpy()[np.arange(len(valid)), valid["label"].cat.codes]
    valid["loss"] = -np.log(np.clip(true_prob, 1e-12, None))
    valid["row"] = valid.index
    return valid.nlargest(n, "loss")
