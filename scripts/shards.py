"""The row blocks of the scattered stages: packing and the audit split the images the same way,
so audit shard ``i`` reads exactly the packed part ``i``."""

import numpy as np


def shard_rows(n_images: int, shards: int, shard: int) -> np.ndarray:
    """Contiguous, nearly equal blocks of rows: shard ``shard`` of ``shards``."""
    return np.array_split(np.arange(n_images), shards)[shard]


def check_shards(n_images: int, shards: int) -> None:
    """Every shard needs at least one image; say so before packing rather than fail in the audit."""
    if shards > n_images:
        raise ValueError(
            f"config key audit.shards: {shards} shards, but only {n_images} images are kept for training and the "
            f"audit; set audit.shards to at most {n_images}"
        )
