"""The whole workflow on 10k and on 100k synthetic images: wall time and peak memory per stage.

    python benchmarks/scale.py                       # 10k and 100k, in /tmp/saliency-audit-scale
    python benchmarks/scale.py --sizes 2000 20000    # any two sizes, the second one the large one

Each size is one real `snakemake --cores all` run (threshold object regions, one
training epoch); the numbers come from the rules' own `benchmark:` files
(Snakemake's wall time of each job) and each job's log, whose last line is its
exact peak memory (the kernel's high-water mark; Snakemake's max_rss is sampled
every 0.5 s, then every 30 s, and misses short peaks). Time should grow linearly
with the number of images, peak memory should not.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml
from synthetic import TARGET_BINS, write_catalog

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from saliency_audit.runtime.job import read_peak_memory  # noqa: E402

STAGES = ["validate_catalog", "bin_classes", "pack_images", "gather_images", "train", "evaluate", "audit", "pca",
          "saliency_stats", "strategy_clusters", "saliency_summary", "galleries"]  # fmt: skip


def run(n: int, workdir: Path) -> tuple[pd.DataFrame, float]:
    """Per-stage seconds and max RSS (MB) of one workflow run on ``n`` images, and the total wall time."""
    folder = workdir / f"n{n}"
    started = time.perf_counter()
    catalog = write_catalog(folder, n)
    print(f"{n} synthetic images ready in {time.perf_counter() - started:.0f} s", flush=True)
    results = folder / "results"
    config = {
        "catalog": str(catalog),
        "images": str(folder / "images/{id}.jpg"),
        "id_column": "id",
        "target": {"column": "target", "bins": TARGET_BINS, "labels": ["small", "medium", "large"],
                   "keep": ["small", "large"]},
        "image": {"size": 64},
        "train": {"epochs": 1, "batch_size": 256},
        "saliency": {"object": {"method": "threshold"}, "gallery": {"n": 8}},
        "results": str(results),
    }  # fmt: skip
    configfile = folder / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "all", "--configfile", str(configfile),
         "--replace-workflow-config", "--forceall", "-q"],
        cwd=REPO, check=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    rows = []
    for stage in STAGES:
        files = [results / f"benchmarks/{stage}.tsv", *sorted((results / "benchmarks" / stage).glob("*.tsv"))]
        tables = [pd.read_csv(f, sep="\t") for f in files if f.is_file()]
        logs = [results / f"logs/{stage}.log", *sorted((results / "logs" / stage).glob("*.log"))]
        peaks = [read_peak_memory(log) for log in logs if log.is_file()]
        if tables:
            if None in peaks or not peaks:
                raise SystemExit(f"a job of {stage} wrote no peak memory line to its log in {results / 'logs'}")
            rows.append({"stage": stage, "seconds": pd.concat(tables)["s"].sum(),
                         "peak_mb": max(peaks)})  # fmt: skip
    return pd.DataFrame(rows).set_index("stage"), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs=2, default=[10_000, 100_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/saliency-audit-scale"))
    args = parser.parse_args()
    small_n, large_n = args.sizes
    small, small_wall = run(small_n, args.workdir)
    large, large_wall = run(large_n, args.workdir)
    table = small.add_suffix("_small").join(large.add_suffix("_large"))
    print(f"\nstage              {small_n:>7} s {large_n:>7} s  time x   {small_n:>6} MB {large_n:>6} MB  peak x")
    for stage, r in table.iterrows():
        print(
            f"{stage:<18} {r.seconds_small:>9.1f} {r.seconds_large:>9.1f} {r.seconds_large / r.seconds_small:>7.1f}"
            f"  {r.peak_mb_small:>9.0f} {r.peak_mb_large:>9.0f} {r.peak_mb_large / r.peak_mb_small:>6.2f}"
        )
    print(f"{'whole run (wall)':<18} {small_wall:>9.1f} {large_wall:>9.1f} {large_wall / small_wall:>7.1f}")
    print(f"(images: {large_n / small_n:.0f}x; time should stay within 12x, peak memory within 1.5x)")


if __name__ == "__main__":
    main()
