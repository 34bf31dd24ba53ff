"""Rule `gather_images`: the packed parts as one ``images.npy``, and the row index that names its rows."""

import sys
from typing import Any

from saliency_audit.data.packing import concatenate, read_ids, row_index
from saliency_audit.runtime.atomic_io import write_parquet
from saliency_audit.runtime.job import start_job


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    ids = read_ids(snakemake.input.labels)
    concatenate(snakemake.input.parts, snakemake.output.images, len(ids))
    write_parquet(row_index(ids), snakemake.output.index)
    print(f"gathered {len(snakemake.input.parts)} packed parts into {len(ids)} images", file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
