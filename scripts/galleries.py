"""Rule `galleries`: image | Grad-CAM of each class, as in the seed's figures, for the images worth looking at;
beside each PNG a CSV of the ids it shows, in order, with their statistics."""

from pathlib import Path
from typing import Any

from saliency_audit.report.figures import save_figure
from saliency_audit.report.saliency_figures import galleries
from saliency_audit.runtime.atomic_io import write_csv
from saliency_audit.runtime.job import start_job
from saliency_audit.saliency.galleries import read_gallery_inputs


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    params = snakemake.params
    inputs = read_gallery_inputs(
        snakemake.input.parts,
        snakemake.input.stats,
        snakemake.input.clean,
        snakemake.input.index,
        snakemake.input.images,
        (snakemake.input.regions, snakemake.input.region_problems),
        snakemake.input.clusters,
    )
    out = Path(snakemake.output.galleries)
    out.mkdir(parents=True, exist_ok=True)
    for name, figure, table in galleries(inputs, params.gallery):
        save_figure(figure, out / name)
        write_csv(table, (out / name).with_suffix(".csv"))


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
