"""Rule `score_twins`: the demo benchmark's truth, from each galaxy's twin (its stamp without off-object sources)."""

import sys
from typing import Any

from saliency_audit.runtime.atomic_io import write_parquet
from saliency_audit.runtime.job import start_job
from saliency_audit.saliency.twins import describe_twins, score_twins


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    params = snakemake.params
    table = score_twins(
        snakemake.input.model, snakemake.input.images, snakemake.input.index, snakemake.input.twins,
        params.device, params.batch_size, params.max_pixels, snakemake.threads,
    )  # fmt: skip
    write_parquet(table, snakemake.output.table)
    print(describe_twins(table), file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
