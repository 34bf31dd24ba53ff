"""The row blocks of the scattered stages: packing and the audit split the images the same way,
so audit shard ``i`` reads exactly the packed part ``i``."""

import numpy as np


def shard_rows(n_images: int, shards: int, shard: int) -> np.ndarray:
    """Contiguous, nearly equal blocks of rows: shard ``shard`` of ``shards``."""
    return np.array_split(np.arange(n_images), shards)[shard]
