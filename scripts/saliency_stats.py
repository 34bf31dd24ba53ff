"""Rule `saliency_stats`: localisation statistics of every image's Grad-CAM maps and its probes' verdict."""

import sys
from typing import Any

from saliency_audit.runtime.atomic_io import write_csv
from saliency_audit.runtime.job import start_job
from saliency_audit.saliency.stats import run_saliency_stats


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    params = snakemake.params
    problems, states = run_saliency_stats(
        snakemake.input.parts,
        snakemake.input.probes,
        (snakemake.input.regions, snakemake.input.region_problems),
        snakemake.input.index,
        params.region,
        (params.min_object_energy, params.min_reliance),
        snakemake.output.table,
        params.object_classes,
    )
    write_csv(problems, snakemake.output.problems)
    print(f"{states.sum()} images scored, {len(problems)} without an object region", file=sys.stderr)
    for state, count in states.items():
        print(f"  state {state}: {count}", file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
