"""Rule `bin_classes`: turn the target into classes, keep the configured ones, split train/valid."""

import sys
from typing import Any

from saliency_audit.data.classes import check_kept_images, is_regression, make_labels, read_clean, training_mean
from saliency_audit.report.data_figures import histogram_figure
from saliency_audit.report.figures import drawing, save_figure
from saliency_audit.runtime.atomic_io import write_csv, write_parquet
from saliency_audit.runtime.job import start_job


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    target = snakemake.params.target
    clean = read_clean(snakemake.input.clean)
    labels, counts = make_labels(clean, target, snakemake.params.split)
    check_kept_images(len(labels), snakemake.params.shards, snakemake.params.components)
    write_parquet(labels, snakemake.output.labels)
    write_csv(counts, snakemake.output.counts)
    column, path = target["column"], snakemake.output.histogram
    with drawing(f"the histogram of the target column {column!r} (config key target.column)", path):
        mean = training_mean(labels) if is_regression(target) else None
        save_figure(histogram_figure(clean[column], target, counts, mean), path)
    print(counts.to_string(index=False), file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
