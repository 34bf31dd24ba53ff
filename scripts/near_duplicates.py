"""Rule `near_duplicates`: the pairs of kept images that are one picture up to noise, flips and turns."""

import sys
from typing import Any

from saliency_audit.data.near_duplicates import crossing_pairs, find_near_duplicates
from saliency_audit.runtime.atomic_io import write_csv
from saliency_audit.runtime.job import start_job


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    table = find_near_duplicates(snakemake.input.images, snakemake.input.labels, snakemake.params.max_distance)
    write_csv(table, snakemake.output.table)
    print(
        f"{len(table)} near-duplicate pairs within {snakemake.params.max_distance}, "
        f"{crossing_pairs(table)} across the train/valid split",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
