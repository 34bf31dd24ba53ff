"""evaluate: the predictions table and the metrics on the valid split. The predictions are the audit pass's
(``saliency_audit.audit.tables.read_predictions``): every image is predicted once; the seed's diagnostic
figures of them are drawn by ``saliency_audit.report.model_figures``."""

from typing import Any

import numpy as np
import pandas as pd

from saliency_audit.model.metrics import classification_metrics, regression_metrics


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


def regression_evaluation(predictions: pd.DataFrame, classes: list[str]) -> dict[str, Any]:
    """metrics.json of a regression: ``rmse``, ``mae``, ``r2``, ``nmad`` and ``bias`` of the predicted
    values on the valid split (and the train split's RMSE, to see over-fitting), beside the scores of
    its two directions as classes."""
    scores = evaluation(predictions, classes)
    valid = (predictions["split"] == "valid").to_numpy()
    values, predicted = predictions["target"].to_numpy(), predictions["predicted_value"].to_numpy()
    train = regression_metrics(values[~valid], predicted[~valid]) if (~valid).any() else {"rmse": None}
    return {"task": "regression", **regression_metrics(values[valid], predicted[valid]),
            "train_rmse": train["rmse"], **scores}  # fmt: skip


def confusion_matrix(scores: dict[str, Any]) -> np.ndarray:
    """The confusion matrix of ``evaluation``'s scores (a nested list, for JSON) as an array, for its figure."""
    return np.array(scores["confusion_matrix"])
