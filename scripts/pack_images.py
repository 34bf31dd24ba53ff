"""Rule `pack_images`: decode every kept image once into memory-mappable uint8 arrays."""

import sys
from typing import Any

from saliency_audit.data.image_io import Decoding
from saliency_audit.data.packing import pack, shard_paths
from saliency_audit.runtime.job import start_job


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    params = snakemake.params
    paths = shard_paths(snakemake.input.labels, snakemake.input.clean, params.shards, params.shard)
    decoding = Decoding.from_config(params.pixels)
    pack(paths, params.size, snakemake.output.part, params.max_pixels, snakemake.threads, decoding=decoding)
    print(f"packed {len(paths)} images of {params.size}x{params.size} (shard {params.shard})", file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
