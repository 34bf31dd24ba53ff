"""Rule `strategy_clusters`: SpRAy-style clusters of the predicted-class Grad-CAM maps, per predicted class."""

import sys
from pathlib import Path
from typing import Any

from saliency_audit.report.figures import save_figure
from saliency_audit.report.saliency_figures import cluster_figures
from saliency_audit.runtime.atomic_io import write_csv, write_parquet
from saliency_audit.runtime.job import start_job
from saliency_audit.saliency.clusters import run_strategy_clusters


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    params = snakemake.params
    strategies = run_strategy_clusters(
        snakemake.input.parts,
        snakemake.input.stats,
        snakemake.input.images,
        snakemake.input.index,
        (snakemake.input.regions, snakemake.input.region_problems),
        params.clusters,
    )
    write_parquet(strategies.clusters, snakemake.output.clusters)
    write_csv(strategies.summary, snakemake.output.summary)
    out = Path(snakemake.output.figures)
    out.mkdir(parents=True, exist_ok=True)
    for name, figure in cluster_figures(strategies):
        save_figure(figure, out / name)
    print(strategies.summary.to_string(index=False), file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
