"""Rule `explorer`: the offline page where every audited image is a point at its PCA position."""

import os
import sys
from typing import Any

from saliency_audit.report.explorer import write_explorer
from saliency_audit.runtime.job import start_job


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    inputs, out = snakemake.input, snakemake.output.page
    shown, thumbnailed = write_explorer(inputs.pcs, inputs.labels, inputs.predictions, inputs.stats, inputs.parts,
                                        inputs.images, inputs.index, (inputs.regions, inputs.region_problems),
                                        snakemake.params.max_thumbnails, out)  # fmt: skip
    print(
        f"explorer: {shown} images, {thumbnailed} with a thumbnail, {os.path.getsize(out) / 1e6:.1f} MB",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
