"""evaluate: predictions for every image and metrics on the valid split (the seed's diagnostic figures of them
are drawn by ``saliency_audit.report.model_figures``)."""

import os
from typing import Any

import numpy as np
import pandas as pd
import torch

from saliency_audit.data.image_io import open_packed
from saliency_audit.model.checkpoint import load_checkpoint
from saliency_audit.model.factory import Classifier, compiled
from saliency_audit.model.metrics import classification_metrics
from saliency_audit.model.training import predict_logits


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


def predict_and_score(
    model_path: str | os.PathLike,
    images_path: str | os.PathLike,
    labels: pd.DataFrame,
    batch_size: int,
    device: torch.device,
    compile: bool = False,
) -> tuple[pd.DataFrame, dict[str, Any], np.ndarray]:
    """The checkpoint's predictions for every packed image and their scores (``evaluation``), with the
    opened packed images that the top-losses figure shows: what the rule writes."""
    model, meta = load_checkpoint(model_path, device)
    images = open_packed(images_path)
    classes = meta["classes"]
    predictions = predictions_table(labels, predict_all(model, meta, images, batch_size, device, compile), classes)
    return predictions, evaluation(predictions, classes), images


def confusion_matrix(scores: dict[str, Any]) -> np.ndarray:
    """The confusion matrix of ``evaluation``'s scores (a nested list, for JSON) as an array, for its figure."""
    return np.array(scores["confusion_matrix"])
