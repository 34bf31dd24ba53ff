"""gather_images: the packed parts as one ``images.npy``, and the row index that names its rows."""

import sys
from typing import Any

import numpy as np
import pandas as pd

from pack_images import concatenate
from saliency_audit.runtime.atomic_io import write_parquet
from saliency_audit.runtime.job import start_job


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    labels = pd.read_parquet(snakemake.input.labels, columns=["id"])
    concatenate(snakemake.input.parts, snakemake.output.images, len(labels))
    write_parquet(pd.DataFrame({"row": np.arange(len(labels)), "id": labels["id"]}), snakemake.output.index)
    print(f"gathered {len(snakemake.input.parts)} packed parts into {len(labels)} images", file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
