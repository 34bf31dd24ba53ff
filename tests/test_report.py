"""The HTML report: rendered by headless Chromium, captions and headline present, catalog strings escaped."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO, TINY_DEMO, run_workflow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE = "<script>document.title='pwned'</script>"
HOSTILE_IMG = "<img src=x onerror=\"document.title='pwned'\">"


def chromium(*args: str) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        pytest.fail("chromium is not installed; `make test` installs it (Debian package chromium)")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--virtual-time-budget=10000", *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def make_report(config: dict, results: Path, *args: str) -> Path:
    report = results / "report.html"
    run_workflow(config, results, *args)  # nothing to do for a finished run
    run_workflow(config, results, *args, "--report", str(report))
    assert report.stat().st_size > 100_000  # self-contained: figures are embedded
    return report


def test_report_renders_with_captions_headline_and_provenance(tiny_demo: Path, tmp_path: Path) -> None:
    report = make_report(TINY_DEMO, tiny_demo)
    shot = tmp_path / "report.png"
    chromium("--window-size=1400,1000", f"--screenshot={shot}", report.as_uri())
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (1000, 1400) and pixels.std() > 10, "the screenshot is blank"

    dom = chromium("--dump-dom", report.as_uri()).stdout
    assert "Headline findings" in dom
    assert "predictions rest mainly on the background" in dom and "Valid split: accuracy" in dom
    for category in ("Data", "Training", "Activations &amp; PCA", "Saliency", "Provenance"):
        assert category in dom, category
    text = " ".join(re.sub(r"<[^>]+>", "", dom.replace("\\n", " ")).split())  # captions as rendered text
    for caption in sorted((REPO / "workflow/report").glob("*.rst")):
        if caption.name == "workflow.rst":
            continue
        opening = " ".join(re.sub(r"[*`]", "", caption.read_text()).split()[:6])
        assert opening in text, f"caption {caption.name} missing"
    provenance = pd.read_csv(tiny_demo / "provenance/provenance.csv")
    assert {"python", "torch", "torchvision", "snakemake", "pandas", "pyarrow", "numpy", "galsim"} <= set(
        provenance.loc[provenance["section"] == "package", "item"]
    )
    items = provenance.set_index("item")["value"]
    assert len(items["catalog SHA-256"]) == 64 and len(items["packed images SHA-256"]) == 64
    assert items["training device"].startswith("cpu")
    assert items["target.keep"] == '["low", "high"]'


def test_catalog_strings_are_escaped_not_executed(tiny_demo: Path, tmp_path: Path) -> None:
    catalog = pd.read_csv(tiny_demo / "demo/catalog.csv", dtype={"objID": str})
    catalog["kind"] = np.where(catalog["bulge_fraction"] > 0.4, HOSTILE, HOSTILE_IMG)
    extra = catalog.iloc[[0]].assign(objID="<b>bold</b>")  # an unsafe id: listed in the integrity table
    pd.concat([catalog, extra]).to_csv(tmp_path / "catalog.csv", index=False)
    config = {
        "catalog": str(tmp_path / "catalog.csv"),
        "images": str(tiny_demo / "demo/images/{id}.jpg"),
        "target": {"column": "kind"},
        "image": {"size": 32},
        "train": {"epochs": 1, "batch_size": 16},
    }
    results = tmp_path / "results"
    report = make_report(config, results, "--replace-workflow-config")
    # a categorical target from the schema's defaults alone: sorted values are the classes, no demo is made
    labels = pd.read_parquet(results / "classes/labels.parquet")
    assert list(labels["class"].cat.categories) == sorted([HOSTILE, HOSTILE_IMG])
    assert (labels["class"].astype(str) == labels["target"]).all() and len(labels) == len(catalog)
    assert np.load(results / "images/images.npy", mmap_mode="r").shape == (len(catalog), 32, 32, 3)
    assert not (results / "demo").exists()
    metrics = json.loads((results / "eval/metrics.json").read_text())
    assert metrics["classes"] == sorted([HOSTILE, HOSTILE_IMG])
    assert metrics["n_valid"] == (labels["split"] == "valid").sum()
    assert {p.name for p in (results / "saliency/galleries").iterdir()} >= {"random.png", "top-losses.png"}

    dom = chromium("--dump-dom", report.as_uri()).stdout
    assert "pwned" not in dom.split("</title>")[0], "a catalog string ran as code in the report"
    assert "<b>bold</b>" not in dom and "<img src=x" not in dom  # shown as text, never parsed as tags
    assert "&lt;script&gt;" in dom or "\\u003cscript" in dom  # the label is there, escaped
