"""Rule `saliency_summary`: the two verdicts per group, the benchmarks and the headline."""

import sys
from typing import Any

from saliency_audit.report.figures import save_figure
from saliency_audit.report.saliency_figures import energy_figure
from saliency_audit.runtime.atomic_io import write_csv, write_json, write_parquet
from saliency_audit.runtime.job import start_job
from saliency_audit.saliency.summary import run_saliency_summary


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    params = snakemake.params
    result = run_saliency_summary(
        snakemake.input.stats,
        snakemake.input.clusters,
        snakemake.input.clean,
        snakemake.input.twins or None,  # the twins exist on the demo only
        params.truth_column,
        params.min_object_energy,
        params.min_reliance,
    )
    write_parquet(result.stats, snakemake.output.stats)
    write_json(result.benchmark, snakemake.output.benchmark)
    write_csv(result.summary, snakemake.output.summary)
    write_json({"headlines": result.headlines}, snakemake.output.headline)
    save_figure(energy_figure(result.stats, params.min_object_energy, result.planted), snakemake.output.figure)
    print("\n".join(result.headlines), file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
