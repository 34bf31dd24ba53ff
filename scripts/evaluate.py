"""Rule `evaluate`: the audit pass's predictions, metrics on the valid split, and the seed's diagnostic figures."""

import sys
from typing import Any

from saliency_audit.audit.tables import read_predictions
from saliency_audit.data.classes import is_regression
from saliency_audit.data.image_io import open_packed
from saliency_audit.model.evaluation import confusion_matrix, evaluation, regression_evaluation
from saliency_audit.model.metrics import top_losses
from saliency_audit.model.training import read_labels
from saliency_audit.report.figures import drawing, save_figure
from saliency_audit.report.model_figures import (
    confusion_figure,
    predicted_vs_true_figure,
    roc_figure,
    top_losses_figure,
)
from saliency_audit.runtime.atomic_io import write_json, write_parquet
from saliency_audit.runtime.job import start_job
from saliency_audit.runtime.reuse import job_key, reusable


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    params, out = snakemake.params, snakemake.output
    labels = read_labels(snakemake.input.labels)
    key = job_key(snakemake, [*snakemake.input.audit, snakemake.input.images], [labels])
    with reusable(out, key, params.reuse) as reused:
        if reused:
            return
        regression = is_regression(params.target)
        predictions, classes = read_predictions(snakemake.input.audit, labels, regression)
        scores = regression_evaluation(predictions, classes) if regression else evaluation(predictions, classes)
        write_parquet(predictions, out.predictions)
        write_json(scores, out.metrics)
        column = params.target["column"]
        if regression:
            with drawing(f"the predicted against true values of the target column {column!r}", out.scatter):
                save_figure(predicted_vs_true_figure(predictions, column, scores), out.scatter)
        with drawing(f"the confusion matrix of the classes of the target column {column!r}", out.confusion):
            save_figure(confusion_figure(confusion_matrix(scores), classes, column), out.confusion)
        with drawing(f"the ROC curves of the classes of the target column {column!r}", out.roc):
            save_figure(roc_figure(predictions, classes, scores["roc_auc"]), out.roc)
        images = open_packed(snakemake.input.images)
        with drawing(f"the top losses of the classes of the target column {column!r}", out.top_losses):
            save_figure(top_losses_figure(top_losses(predictions, classes, 12), images), out.top_losses)
        print({k: v for k, v in scores.items() if k != "confusion_matrix"}, file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
