"""Rule `provenance`: what produced this run, as one table for the report."""

import sys
from typing import Any

from saliency_audit.report.provenance import run_provenance
from saliency_audit.runtime.atomic_io import write_csv
from saliency_audit.runtime.job import start_job


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    inputs = snakemake.input
    table = run_provenance(
        snakemake.params.config,
        snakemake.params.workflow_dir,
        inputs.catalog,
        inputs.images,
        inputs.model,
        inputs.clean,
        inputs.labels,
    )
    write_csv(table, snakemake.output.table)
    print(table.to_string(index=False), file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
