"""The model stage's figures: the training curve (rule ``train``) and the seed's diagnostic figures of the
predictions (rule ``evaluate``: confusion matrix, ROC curve, top losses)."""

import numpy as np
import pandas as pd

from saliency_audit.data.image_io import read_rows
from saliency_audit.model.metrics import roc_curve
from saliency_audit.report.figures import CLASS_COLOURS, plt, short_label


def training_curve(history: pd.DataFrame) -> plt.Figure:
    """Loss per epoch (left) and validation metrics per epoch (right)."""
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(8, 3.2))
    loss_ax.plot(history["epoch"], history["train_loss"], "o-", label="train", color="#003f5c")
    loss_ax.plot(history["epoch"], history["valid_loss"], "o-", label="valid", color="#ffa600")
    loss_ax.set_xlabel("Epoch")
    loss_ax.set_ylabel("Cross-entropy loss")
    loss_ax.set_yscale("log")
    loss_ax.legend(frameon=False)
    for name, colour in (("accuracy", "#003f5c"), ("roc_auc", "#bc5090"), ("f1", "#ffa600")):
        metric_ax.plot(history["epoch"], history[name], "o-", label=name.replace("_", " "), color=colour)
    metric_ax.set_xlabel("Epoch")
    metric_ax.set_ylabel("Validation score")
    metric_ax.legend(frameon=False)
    for ax in (loss_ax, metric_ax):
        ax.xaxis.get_major_locator().set_params(integer=True)
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
        ax.imshow(image)
        prob = row[f"prob_{row['predicted']}"]
        pair = f"{short_label(row['predicted'])} / {short_label(row['label'])}"
        ax.set_title(f"{pair}\nloss {row['loss']:.2f} · p {prob:.2f}", fontsize=8)
    fig.suptitle("Top losses (predicted / true)", fontsize=10)
    fig.tight_layout()
    return fig
