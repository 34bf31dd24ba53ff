"""evaluate: predictions for every image, metrics on the valid split, and the seed's diagnostic figures."""

import sys
from typing import Any

import numpy as np
import pandas as pd
import torch

from saliency_audit.data.image_io import open_packed, read_rows
from saliency_audit.model.checkpoint import load_checkpoint, select_device
from saliency_audit.model.factory import Classifier, compiled
from saliency_audit.model.metrics import classification_metrics, roc_curve, top_losses
from saliency_audit.report.figures import CLASS_COLOURS, plt, save_figure
from saliency_audit.runtime.atomic_io import write_json, write_parquet
from saliency_audit.runtime.job import start_job
from saliency_audit.runtime.reuse import job_key, reusable
from train import predict_logits


def predictions_table(labels: pd.DataFrame, probs: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """id, split, label, predicted, prob_<class>: one row per image, in packed order."""
    table = pd.DataFrame(
        {
            "id": labels["id"].to_numpy(),
            "split": labels["split"].to_numpy(),
            "label": pd.Categorical(labels["class"].astype(str), categories=classes),
            "predicted": pd.Categorical.from_codes(probs.argmax(axis=1), categories=classes),
        }
    )
    for k, name in enumerate(classes):
        table[f"prob_{name}"] = probs[:, k].astype(np.float32)
    return table


def predict_all(
    model: Classifier,
    meta: dict[str, Any],
    images: np.ndarray,
    batch_size: int,
    device: torch.device,
    compile: bool = False,
) -> np.ndarray:
    """Softmax probabilities of every packed image (with ``compile``, through ``torch.compile``)."""
    network = compiled(model) if compile else model
    logits = predict_logits(network, images, np.arange(len(images)), meta["mean"], meta["std"], batch_size, device)
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy()


def evaluation(predictions: pd.DataFrame, classes: list[str]) -> dict[str, Any]:
    """metrics.json: scores on the valid split (and train accuracy, to see over-fitting)."""
    probs = predictions[[f"prob_{c}" for c in classes]].to_numpy(dtype=np.float64)
    codes = predictions["label"].cat.codes.to_numpy()
    valid = (predictions["split"] == "valid").to_numpy()
    scores = classification_metrics(codes[valid], probs[valid])
    train = ~valid
    scores.update(
        classes=classes,
        n_valid=int(valid.sum()),
        n_train=int(train.sum()),
        train_accuracy=float((probs[train].argmax(1) == codes[train]).mean()) if train.any() else None,
    )
    return scores


def confusion_figure(matrix: np.ndarray, classes: list[str], target: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2.2, 1.2 * len(classes) + 1.8))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=colour, fontsize=11)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
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
        ax.plot(fpr, tpr, color=CLASS_COLOURS[k % len(CLASS_COLOURS)], label=f"{name} vs rest")
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
        ax.set_title(f"{row['predicted']} / {row['label']}\nloss {row['loss']:.2f} · p {prob:.2f}", fontsize=8)
    fig.suptitle("Top losses (predicted / true)", fontsize=10)
    fig.tight_layout()
    return fig


def write_evaluation(snakemake: Any, labels: pd.DataFrame, device: torch.device) -> None:
    """Predictions, metrics and figures of the rule's outputs."""
    model, meta = load_checkpoint(snakemake.input.model, device)
    images = open_packed(snakemake.input.images)
    classes = meta["classes"]
    predictions = predictions_table(
        labels, predict_all(model, meta, images, snakemake.params.batch_size, device, snakemake.params.compile), classes
    )
    scores = evaluation(predictions, classes)
    write_parquet(predictions, snakemake.output.predictions)
    write_json(scores, snakemake.output.metrics)
    target = snakemake.params.target_column
    save_figure(confusion_figure(np.array(scores["confusion_matrix"]), classes, target), snakemake.output.confusion)
    save_figure(roc_figure(predictions, classes, scores["roc_auc"]), snakemake.output.roc)
    save_figure(top_losses_figure(top_losses(predictions, classes, 12), images), snakemake.output.top_losses)
    print({k: v for k, v in scores.items() if k != "confusion_matrix"}, file=sys.stderr)


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    torch.set_num_threads(snakemake.threads)
    device = select_device(snakemake.params.device)
    labels = pd.read_parquet(snakemake.input.labels)
    key = job_key(snakemake, [snakemake.input.model, snakemake.input.images], [labels])
    with reusable(snakemake.output, key, snakemake.params.reuse) as reused:
        if not reused:
            write_evaluation(snakemake, labels, device)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
