"""Synthetic galaxy-like cutouts made fast with numpy (no GalSim), for the benchmarks.

Each image is an elliptical exponential-ish blob on a noisy sky. The target grows
with the blob's size and its colour shifts with it, so a CNN has something to learn
and the saliency stages see a real object.
"""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

TARGET_BINS = [0.5, 2.0, 2.585, 3.5]  # log2 of the radius in pixels (2 to 8): three classes of similar size


def galaxies(n: int, size: int = 64, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """``n`` uint8 RGB cutouts (N x size x size x 3) and their table (id, target, radius_px)."""
    rng = np.random.default_rng(seed)
    radius = rng.uniform(2.0, 8.0, n)
    ratio = rng.uniform(0.4, 1.0, n)
    angle = rng.uniform(0.0, np.pi, n)
    flux = rng.uniform(120.0, 230.0, n)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) - (size - 1) / 2
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for start in range(0, n, 2048):
        part = slice(start, min(start + 2048, n))
        c, s = np.cos(angle[part])[:, None, None], np.sin(angle[part])[:, None, None]
        u, v = xx * c + yy * s, (-xx * s + yy * c) / ratio[part][:, None, None]
        profile = flux[part][:, None, None] * np.exp(-np.hypot(u, v) / (radius[part][:, None, None] / 1.7))
        colour = np.stack([0.8 + 0.05 * radius[part], np.ones_like(radius[part]), 1.3 - 0.05 * radius[part]], 1)
        sky = rng.normal(25.0, 4.0, (part.stop - part.start, size, size, 3))
        images[part] = np.clip(profile[..., None] * colour[:, None, None, :] + sky, 0, 255).astype(np.uint8)
    target = np.log2(radius) + rng.normal(0.0, 0.1, n)
    table = pd.DataFrame({"id": [f"s{i:07d}" for i in range(n)], "target": target, "radius_px": radius})
    return images, table


def save_jpeg(image: np.ndarray, path: Path) -> None:
    Image.fromarray(image).save(path, quality=92)


def write_catalog(folder: Path, n: int, size: int = 64, seed: int = 0, workers: int = 4) -> Path:
    """Write ``n`` JPEG cutouts and ``catalog.csv`` under ``folder`` (once); return the catalog path."""
    catalog = folder / "catalog.csv"
    if catalog.exists():
        return catalog
    images_dir = folder / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    for start in range(0, n, 20_000):
        images, table = galaxies(min(20_000, n - start), size, seed + start)
        table["id"] = [f"s{start + i:07d}" for i in range(len(table))]

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(save_jpeg, images, [images_dir / f"{i}.jpg" for i in table["id"]]))
        table.to_csv(catalog.with_suffix(".part"), mode="a", header=start == 0, index=False)
    catalog.with_suffix(".part").rename(catalog)
    return catalog
