"""Size and speed of the explorer page at scale, in headless Chromium with no network.

A synthetic run of N images (default 100,000; two classes): points spread like PCA scores, the
flags and statistics of an audit, and ``explorer.max_thumbnails`` (20,000) thumbnailed images whose
tiles look like the demo's (a noisy elliptical galaxy, smooth maps, a disc as its object): the tiles
are synthetic, the sheets and the page are made by the rule's own code. Prints the page's size by
part, the time to first render (navigation to every point drawn), a filter, a range of a statistic,
a hover and two pins.

    python benchmarks/explorer.py [--images 100000] [--thumbnails 20000]
"""

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tests")]  # the library and the tests' Chromium driver
from devtools import open_page  # noqa: E402
from saliency_audit.report.explorer import (  # noqa: E402
    THUMBNAIL,
    SpriteSheets,
    choose_thumbnails,
    explorer_html,
)

CLASSES = ["high", "low"]


def synthetic_points(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """n audited images: two classes apart on PC1, 10% wrong, 5% flagged, four clusters."""
    label = rng.choice(CLASSES, n)
    wrong = rng.random(n) < 0.1
    predicted = np.where(wrong, np.where(label == "high", "low", "high"), label)
    probability = rng.uniform(0.5, 1.0, n)
    shift = np.where(predicted == "high", 2.0, -2.0)
    return pd.DataFrame(
        {
            "id": [f"J{k:07d}+{k % 997:04d}" for k in range(n)],
            "split": rng.choice(["train", "valid"], n, p=[0.8, 0.2]),
            "label": label,
            "predicted": predicted,
            "correct": ~wrong,
            "probability": probability,
            "target": rng.normal(8.7, 0.3, n),
            "pc1": rng.normal(shift, 1.0),
            "pc2": rng.normal(0, 1.0, n),
            "pc3": rng.normal(0, 0.7, n),
            "relative_energy": rng.lognormal(0, 0.5, n),
            "background_focused": rng.random(n) < 0.03,
            "background_reliance": rng.normal(0.1, 0.2, n),
            "background_reliant": rng.random(n) < 0.02,
            "cluster": rng.integers(0, 4, n).astype(float),
            "prob_high": np.where(predicted == "high", probability, 1 - probability),
            "prob_low": np.where(predicted == "low", probability, 1 - probability),
        }
    )


def synthetic_tiles(n: int, rng: np.random.Generator) -> np.ndarray:
    """n x 4 tiles: a noisy elliptical galaxy, two smooth maps, its object's disc."""
    yy, xx = np.mgrid[:THUMBNAIL, :THUMBNAIL] - (THUMBNAIL - 1) / 2
    tiles = np.zeros((n, 4, THUMBNAIL, THUMBNAIL, 3), np.uint8)
    for k in range(n):
        q, angle, size = rng.uniform(0.4, 1), rng.uniform(0, np.pi), rng.uniform(3, 9)
        u, v = xx * np.cos(angle) + yy * np.sin(angle), -xx * np.sin(angle) + yy * np.cos(angle)
        galaxy = 200 * np.exp(-np.hypot(u, v / q) / size * 1.7) + rng.normal(20, 6, (THUMBNAIL, THUMBNAIL))
        tiles[k, 0] = np.clip(galaxy[..., None] * rng.uniform(0.8, 1.0, 3), 0, 255)
        for c in (1, 2):
            cx, cy = rng.uniform(-15, 15, 2)
            tiles[k, c] = (255 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 8.0**2)))[..., None]
        tiles[k, 3] = np.where(np.hypot(u, v / q) < 2.5 * size, 255, 0)[..., None]
    return tiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--thumbnails", type=int, default=20_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    points = synthetic_points(args.images, rng)
    chosen = choose_thumbnails(points, args.thumbnails)
    start = time.perf_counter()
    sheets = SpriteSheets()
    for at in range(0, len(chosen), 1000):
        sheets.add(synthetic_tiles(min(1000, len(chosen) - at), rng).reshape(-1, THUMBNAIL, THUMBNAIL, 3))
    jpegs = sheets.finish()
    first_tile = np.full(len(points), -1, np.int64)
    first_tile[chosen] = np.arange(len(chosen)) * (2 + len(CLASSES))
    html = explorer_html(points, first_tile, jpegs)
    built = time.perf_counter() - start
    sizes = {
        "plotly.js": len(re.search(r"<script>(.*?)</script>", html, re.S).group(1)),
        "point data": len(re.search(r'<script id="data"[^>]*>(.*?)</script>', html, re.S).group(1)),
        "tiles": len(re.search(r'<script id="sprites"[^>]*>(.*?)</script>', html, re.S).group(1)),
    }
    print(f"{args.images:,} images, {len(chosen):,} with tiles ({len(jpegs)} sheets), built in {built:.1f} s")
    print(f"page {len(html) / 1e6:.1f} MB: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items()))
    root = "document.getElementById('explorer').dataset"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "explorer.html"
        path.write_text(html, encoding="utf-8")
        with open_page("about:blank") as page:
            start = time.perf_counter()
            page.send("Page.navigate", url=path.as_uri())
            page.wait_for(f"{root} && {root}.visible === '{args.images}'", timeout=600)
            print(f"first render {time.perf_counter() - start:.1f} s")
            timings = {}
            change = "byId({0!r}).value = {1!r}; byId({0!r}).dispatchEvent(new Event('change'));"
            for name, action, expected in (
                ("filter (label = high)", change.format("filter-label", "high"), (points["label"] == "high").sum()),
                ("range (relative_energy >= 1)",
                 change.format("filter-label", "") + change.format("range-stat", "relative_energy")
                 + change.format("range-min", "1"), (points["relative_energy"] >= 1).sum()),
            ):  # fmt: skip
                start = time.perf_counter()
                page.evaluate(f"(() => {{ {action} }})()")
                page.wait_for(f"{root}.visible === '{expected}'", timeout=600)
                timings[name] = time.perf_counter() - start
            for name, call in (
                ("hover, sheet not yet decoded", f"show({int(chosen[-1])})"),  # a tile on the last sheet
                ("pin, sheet decoded", f"pin({int(chosen[-1])})"),
                ("pin, sheet not yet decoded", f"pin({int(chosen[0])})"),  # the first sheet
            ):
                start = time.perf_counter()
                page.evaluate(call)
                timings[name] = time.perf_counter() - start
            print(", ".join(f"{name} {seconds:.2f} s" for name, seconds in timings.items()))


if __name__ == "__main__":
    main()
