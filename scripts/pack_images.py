"""pack_images: decode every kept image once into one memory-mappable uint8 array.

Training and the audit read ``images.npy`` (N x S x S x 3, rows in the order of
``index.parquet``) instead of decoding JPEGs again every epoch.
"""

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.format import open_memmap
from tqdm import tqdm

from atomic_io import atomic_path, write_parquet
from image_io import center_crop_pad, load_rgb


def pack(
    paths: list[str], size: int, out: str | os.PathLike, max_pixels: int, workers: int = 1, chunk: int = 512
) -> None:
    """Write the centre-cropped/padded RGB images of ``paths`` to ``out`` as one .npy array.

    Images are decoded in threads, a chunk at a time, so memory stays bounded by
    the chunk whatever the number of images.
    """

    def decode(path: str) -> np.ndarray:
        return center_crop_pad(load_rgb(path, max_pixels), size)

    with atomic_path(out) as tmp:
        array = open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))
        with (
            ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
            tqdm(total=len(paths), desc="pack", unit="image", mininterval=2.0) as progress,
        ):
            for start in range(0, len(paths), chunk):
                batch = paths[start : start + chunk]
                for offset, image in enumerate(pool.map(decode, batch)):
                    array[start + offset] = image
                progress.update(len(batch))
        array.flush()
        del array


def main(snakemake: Any) -> None:
    sys.stderr = open(snakemake.log[0], "w", buffering=1)
    labels = pd.read_parquet(snakemake.input.labels)
    clean = pd.read_parquet(snakemake.input.clean, columns=["id", "image"])
    paths = labels[["id"]].merge(clean, on="id", how="left", validate="one_to_one")["image"].tolist()
    pack(paths, snakemake.params.size, snakemake.output.images, snakemake.params.max_pixels, snakemake.threads)
    write_parquet(pd.DataFrame({"row": np.arange(len(labels)), "id": labels["id"]}), snakemake.output.index)
    print(f"packed {len(paths)} images of {snakemake.params.size}x{snakemake.params.size}", file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
