"""The near-duplicate search (rule ``near_duplicates``) on 10k, 30k and 100k synthetic cutouts: time,
peak memory, and whether the planted copies are found.

    python benchmarks/near_duplicates.py [--sizes 10000 30000 100000] [--distance 0.15]

The images are ``synthetic.galaxies`` with their sky noise raised to 16 grey levels, the demo's: centred
elliptical blobs, the hard case for a pixel descriptor (at low resolution every cutout looks like the
others; without the noise two blobs of one size and angle are the same picture). In each set, 1% of the
images are replaced by a copy of another image of the set, flipped or turned at random and given new
noise of 2 grey levels; those pairs are the truth. Each size runs in a
fresh process (descriptors from the packed .npy file, as the rule reads it, then the search) whose peak
resident size (``VmHWM``) is reported with the wall time of each step. The search should grow about
linearly with the number of images, never as N^2.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from synthetic import galaxies

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time
import numpy as np
sys.path.insert(0, {scripts!r})
from saliency_audit.data.image_io import open_packed
from saliency_audit.data.near_duplicates import descriptors, near_pairs
start = time.perf_counter()
described = descriptors(open_packed({packed!r}))
middle = time.perf_counter()
pairs = near_pairs(described, {distance})
end = time.perf_counter()
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({{"describe_s": middle - start, "search_s": end - middle, "peak_rss_mb": peak_kb / 1024,
                  "pairs": pairs[["a", "b"]].to_numpy().tolist()}}))
"""


def planted_set(n: int, seed: int = 0) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """``n`` synthetic cutouts of which 1% are noisy flipped/turned copies of others, and those pairs."""
    images, _ = galaxies(n, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for start in range(0, n, 4096):
        part = images[start : start + 4096].astype(np.float32) + rng.normal(
            0.0, 15.5, images[start : start + 4096].shape
        )
        images[start : start + 4096] = np.clip(np.round(part), 0, 255).astype(np.uint8)
    copies = rng.choice(n, size=2 * (n // 100), replace=False)
    truth = set()
    for source, copy in zip(copies[::2], copies[1::2]):
        turned = np.rot90(images[source], k=int(rng.integers(4)), axes=(0, 1))
        if rng.integers(2):
            turned = turned[:, ::-1]
        noisy = turned.astype(np.float64) + rng.normal(0.0, 2.0, turned.shape)
        images[copy] = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
        truth.add((int(min(source, copy)), int(max(source, copy))))
    return images, truth


def measure(n: int, distance: float, workdir: Path) -> dict[str, float]:
    images, truth = planted_set(n)
    packed = workdir / f"images-{n}.npy"
    np.save(packed, images)
    del images
    code = CHILD.format(scripts=str(REPO / "scripts"), packed=str(packed), distance=distance)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    packed.unlink()
    found = {tuple(pair) for pair in result.pop("pairs")}
    result.update(
        n=n,
        planted=len(truth),
        recall=len(found & truth) / len(truth),
        other_pairs=len(found - truth),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--distance", type=float, default=0.15)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="near-duplicates-") as folder:
        for n in args.sizes:
            row = measure(n, args.distance, Path(folder))
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("| images | describe s | search s | peak RSS MB | planted pairs | recall | other pairs |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['n']:,} | {r['describe_s']:.1f} | {r['search_s']:.1f} | {r['peak_rss_mb']:.0f} | "
            f"{r['planted']} | {r['recall']:.3f} | {r['other_pairs']} |"
        )
    first, last = rows[0], rows[-1]
    print(
        f"x{last['n'] / first['n']:.0f} images: search time x{last['search_s'] / first['search_s']:.1f}, "
        f"peak memory x{last['peak_rss_mb'] / first['peak_rss_mb']:.1f}"
    )


if __name__ == "__main__":
    main()
