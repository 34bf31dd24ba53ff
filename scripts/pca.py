"""Rule `pca`: exact PCA of the penultimate activations from streamed moments, and the seed's figures."""

import sys
from typing import Any

from saliency_audit.audit.pca import describe_fit, figure_points, fit_pca, merge_moments, project_dataset, read_labels
from saliency_audit.audit.tables import audit_dataset
from saliency_audit.data.classes import is_regression
from saliency_audit.data.image_io import open_packed
from saliency_audit.report.figures import drawing, save_figure
from saliency_audit.report.pca_figures import ColourScale, scatter_figure, thumbnail_figure, variance_figure
from saliency_audit.runtime.atomic_io import write_json, write_parquet
from saliency_audit.runtime.job import start_job


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    params = snakemake.params
    fit = fit_pca(merge_moments(snakemake.input.moments), params.components, params.whiten)
    dataset = audit_dataset(snakemake.input.parts)
    pcs = project_dataset(dataset, fit)
    write_parquet(pcs, snakemake.output.table)
    write_json(fit.to_json(), snakemake.output.summary)

    labels, classes = read_labels(snakemake.input.labels)
    regression = is_regression(params.target)
    scale = ColourScale.from_target(params.target, classes, labels["target"] if regression else None)
    points = figure_points(pcs, dataset, labels, regression=regression)
    column = params.target["column"]
    with drawing(f"the PCA scatter coloured by the target column {column!r}", snakemake.output.scatter):
        save_figure(scatter_figure(points, scale, column), snakemake.output.scatter)
    path = snakemake.output.thumbnails
    with drawing(f"the PCA thumbnails framed by the classes of the target column {column!r}", path):
        save_figure(thumbnail_figure(points, open_packed(snakemake.input.images), classes), path)
    save_figure(variance_figure(fit), snakemake.output.variance)
    print(describe_fit(fit), file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
