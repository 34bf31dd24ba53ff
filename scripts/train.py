"""Rule `train`: fit the configured CNN on the packed training images with a one-cycle schedule."""

from typing import Any

from saliency_audit.data.image_io import open_packed
from saliency_audit.model.checkpoint import save_checkpoint, select_device
from saliency_audit.model.training import (
    clear_resume,
    fit,
    read_labels,
    resume_path,
    set_threads,
    train_settings,
    training_labels,
)
from saliency_audit.report.figures import save_figure
from saliency_audit.report.model_figures import training_curve
from saliency_audit.runtime.atomic_io import write_csv
from saliency_audit.runtime.job import start_job
from saliency_audit.runtime.reuse import job_key, reusable


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    set_threads(snakemake.threads)
    params = snakemake.params
    device = select_device(params.train["device"])
    settings = train_settings(params.train)
    labels = read_labels(snakemake.input.labels)
    # what training depends on: the pixels, each image's class and split (its value in a regression), the settings
    weights = params.model.get("weights")
    regression_loss = params.regression_loss  # None for a classifier
    key = job_key(
        snakemake,
        [snakemake.input.images, *([weights] if weights else [])],
        [training_labels(labels, regression_loss is not None)],
    )
    with reusable(snakemake.output, key, params.reuse) as reused:
        if reused:
            return
        model_path = snakemake.output.model
        images = open_packed(snakemake.input.images)
        arch, stride = params.model["arch"], params.model["stride"]
        # a job killed after epoch k (a time limit, a preempted node) resumes there when it runs again
        pixels = params.pixels
        norm = (pixels["mean"], pixels["std"]) if pixels.get("mean") is not None else None
        model, history, metadata = fit(
            images, labels, arch, stride, settings, device, resume_path(model_path), key, weights, norm, regression_loss
        )
        save_checkpoint(model, metadata, model_path)
        write_csv(history, snakemake.output.history)
        save_figure(training_curve(history), snakemake.output.curve)
        clear_resume(model_path)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
