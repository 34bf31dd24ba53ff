"""The model stage's figures: the training curve (rule ``train``) and the seed's diagnostic figures of the
predictions (rule ``evaluate``: confusion matrix, ROC curve, top losses; a regression's predicted against
true values)."""

from typing import Any

import numpy as np
import pandas as pd

from saliency_audit.data.image_io import read_rows, shown_rgb
from saliency_audit.model.metrics import roc_curve
from saliency_audit.report.figures import CLASS_COLOURS, plt, short_label


def training_curve(history: pd.DataFrame) -> plt.Figure:
    """Loss per epoch (left) and validation metrics per epoch (right): accuracy, ROC AUC and F1 of a
    classifier; R² of a regression (its history has ``r2``), whose RMSE is on the left's twin axis."""
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(8, 3.2))
    regression = "r2" in history
    loss_ax.plot(history["epoch"], history["train_loss"], "o-", label="train", color="#003f5c")
    loss_ax.plot(history["epoch"], history["valid_loss"], "o-", label="valid", color="#ffa600")
    loss_ax.set_xlabel("Epoch")
    loss_ax.set_ylabel("Loss (standardised target)" if regression else "Cross-entropy loss")
    loss_ax.set_yscale("log")
    loss_ax.legend(frameon=False)
    scores = (
        (("r2", "#bc5090"),) if regression else (("accuracy", "#003f5c"), ("roc_auc", "#bc5090"), ("f1", "#ffa600"))
    )
    for name, colour in scores:
        shown = "R²" if name == "r2" else name.replace("_", " ")
        metric_ax.plot(history["epoch"], history[name], "o-", label=shown, color=colour)
    if regression:
        rmse_ax = metric_ax.twinx()
        rmse_ax.plot(history["epoch"], history["rmse"], "s--", label="RMSE", color="#003f5c")
        rmse_ax.set_ylabel("Validation RMSE (target units)")
        rmse_ax.legend(frameon=False, loc="center right")
    metric_ax.set_xlabel("Epoch")
    metric_ax.set_ylabel("Validation score")
    metric_ax.legend(frameon=False)
    for ax in (loss_ax, metric_ax):
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return fig


def predicted_vs_true_figure(predictions: pd.DataFrame, target: str, scores: dict[str, Any]) -> plt.Figure:
    """A regression's predicted against true value on the valid split (the train split faint behind), the
    one-to-one line, and RMSE, NMAD, R² and bias in the corner; density-shaded above a few thousand points."""
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    valid = (predictions["split"] == "valid").to_numpy()
    true, predicted = predictions["target"].to_numpy(), predictions["predicted_value"].to_numpy()
    ax.scatter(true[~valid], predicted[~valid], s=3, color="#b0b0b0", alpha=0.3, lw=0, label="train", rasterized=True)
    if valid.sum() > 3000:
        ax.hexbin(true[valid], predicted[valid], gridsize=60, mincnt=1, cmap="viridis", bins="log")
    else:
        ax.scatter(true[valid], predicted[valid], s=6, color="#003f5c", alpha=0.7, lw=0, label="valid")
    finite = np.concatenate([true, predicted])
    finite = finite[np.isfinite(finite)]
    lo, hi = np.percentile(finite, [0.5, 99.5]) if len(finite) else (0.0, 1.0)
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="#ff6361", lw=1, ls="--", label="one to one")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal")
    ax.set_xlabel(f"True {short_label(target)}")
    ax.set_ylabel(f"Predicted {short_label(target)}")
    text = (
        f"valid split, {int(valid.sum())} images\nRMSE {scores['rmse']:.3g}   NMAD {scores['nmad']:.3g}\n"
        f"R² {scores['r2']:.3f}   bias {scores['bias']:+.2g}"
    )
    box = {"facecolor": "white", "alpha": 0.8, "lw": 0}
    ax.text(0.03, 0.97, text, transform=ax.transAxes, va="top", fontsize=8, bbox=box)
    ax.legend(frameon=False, loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def confusion_figure(matrix: np.ndarray, classes: list[str], target: str) -> plt.Figure:
    """Counts of true (rows) against predicted (columns) classes on the valid split, each in its cell."""
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2.2, 1.2 * len(classes) + 1.8))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=colour, fontsize=11)
    names = [short_label(name) for name in classes]
    long = sum(map(len, names)) > 40
    ax.set_xticks(range(len(classes)), names, rotation=30 if long else 0, ha="right" if long else "center")
    ax.set_yticks(range(len(classes)), names)
    ax.set_xlabel(f"Predicted {target}")
    ax.set_ylabel(f"True {target}")
    ax.spines[:].set_visible(False)
    fig.tight_layout()
    return fig


def roc_figure(predictions: pd.DataFrame, classes: list[str], auc: float) -> plt.Figure:
    """ROC on the valid split: the positive (second) class for two classes, one-vs-rest otherwise."""
    valid = predictions[predictions["split"] == "valid"]
    shown = classes[1:] if len(classes) == 2 else classes
    fig, ax = plt.subplots(figsize=(4.2, 4))
    for k, name in enumerate(shown):
        fpr, tpr = roc_curve((valid["label"] == name).to_numpy(), valid[f"prob_{name}"].to_numpy())
        ax.plot(fpr, tpr, color=CLASS_COLOURS[k % len(CLASS_COLOURS)], label=f"{short_label(name)} vs rest")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    ax.set_title(f"Valid ROC AUC = {auc:.3f}", fontsize=10)
    ax.legend(frameon=False, loc="lower right")
    ax.set_aspect("equal")
    fig.tight_layout()
    return fig


def top_losses_figure(losses: pd.DataFrame, images: np.ndarray, columns: int = 4) -> plt.Figure:
    """Like the seed's plot_top_losses: image, predicted / true, loss, probability of the prediction."""
    rows = -(-len(losses) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.1 * columns, 2.7 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (_, row), image in zip(axes.flat, losses.iterrows(), read_rows(images, losses["row"].to_numpy())):
        ax.imshow(shown_rgb(image))
        prob = row[f"prob_{row['predicted']}"]
        pair = f"{short_label(row['predicted'])} / {short_label(row['label'])}"
        ax.set_title(f"{pair}\nloss {row['loss']:.2f} · p {prob:.2f}", fontsize=8)
    fig.suptitle("Top losses (predicted / true)", fontsize=10)
    fig.tight_layout()
    return fig
