"""Same config, same seed, on CPU: a second run into another folder gives identical tables and metrics."""

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from conftest import TINY_DEMO, run_workflow

TABLES = (
    "classes/labels.parquet",
    "eval/predictions.parquet",
    "audit/part-0.parquet",
    "pca/pca.parquet",
    "saliency/stats.parquet",
)


def test_a_second_run_reproduces_every_table_exactly(tiny_demo: Path, tmp_path: Path) -> None:
    again = tmp_path / "results"
    run_workflow(TINY_DEMO, again)
    for table in TABLES:
        first, second = pq.read_table(tiny_demo / table), pq.read_table(again / table)
        assert first.equals(second), f"{table} differs between two runs of the same config"
    for name in ("eval/metrics.json", "pca/pca.json", "saliency/benchmark.json"):
        assert json.loads((tiny_demo / name).read_text()) == json.loads((again / name).read_text()), name
    pd.testing.assert_frame_equal(
        pd.read_csv(tiny_demo / "saliency/summary.csv"), pd.read_csv(again / "saliency/summary.csv")
    )
    assert (tiny_demo / "images/images.npy").read_bytes() == (again / "images/images.npy").read_bytes()
    assert (tiny_demo / "demo/catalog.csv").read_bytes() == (again / "demo/catalog.csv").read_bytes()
