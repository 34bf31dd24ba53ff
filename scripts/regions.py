"""Rule `regions`: the object region and the other sources of every image of a shard, found once."""

import sys
from typing import Any

from saliency_audit.data.region_store import run_regions
from saliency_audit.runtime.job import start_job


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    params, inputs, output = snakemake.params, snakemake.input, snakemake.output
    message = run_regions(
        inputs.images, inputs.labels, inputs.clean, (params.shard, params.shards), params.region, params.max_pixels,
        (output.part, output.problems),
    )  # fmt: skip
    print(message, file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
