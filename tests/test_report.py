"""The HTML report: rendered by headless Chromium, captions and headline present, catalog strings escaped."""

import hashlib
import html
import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from docutils.core import publish_parts
from PIL import Image

from helpers import REPO, TINY_DEMO, run_workflow
from saliency_audit.report.text import rst_text, script_safe_dumps

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


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


@pytest.mark.browser
def test_report_renders_with_captions_headline_and_provenance(tiny_demo: Path, tmp_path: Path) -> None:
    report = make_report(TINY_DEMO, tiny_demo)
    shot = tmp_path / "report.png"
    chromium("--window-size=1400,1000", f"--screenshot={shot}", report.as_uri())
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (1000, 1400) and pixels.std() > 10, "the screenshot is blank"

    dom = chromium("--dump-dom", report.as_uri()).stdout
    assert "Headline findings" in dom
    assert "margin when the background is replaced" in dom and "rest mainly on the background" in dom
    assert "Valid split: accuracy" in dom
    for category in ("Data", "Training", "Activations &amp; PCA", "Saliency", "Provenance"):
        assert category in dom, category
    # captions sit in the page's script-safe JSON (\u003c for <) until their category is opened
    unescaped = dom.replace("\\u003c", "<").replace("\\u003e", ">").replace("\\u0026", "&").replace("\\n", " ")
    text = " ".join(re.sub(r"<[^>]+>", "", unescaped).split())  # captions as rendered text
    for caption in sorted((REPO / "workflow/report").glob("*.rst")):
        if caption.name in ("workflow.rst", "predicted_vs_true.rst"):  # the latter only for a regression
            continue
        opening = " ".join(re.sub(r"[*`]", "", caption.read_text()).split()[:6])
        assert opening in text, f"caption {caption.name} missing"
    pairs = pd.read_csv(tiny_demo / "catalog/near_duplicates.csv")
    assert list(pairs.columns) == ["id_a", "id_b", "split_a", "split_b", "distance"]
    crossing = int((pairs["split_a"] != pairs["split_b"]).sum())
    assert f"Near-duplicates: {len(pairs)} pairs of kept images within distance 0.15, {crossing} of them" in text
    problems = pd.read_csv(tiny_demo / "eval/label_problems.csv")
    assert list(problems.columns)[:4] == ["id", "split", "label", "suggested"]
    valid = int((problems["split"] == "valid").sum())
    assert f"Likely label problems: {len(problems)} images whose label the model and their nearest" in text
    assert f"{valid} in the valid split and {len(problems) - valid} in the training split" in text
    provenance = pd.read_csv(tiny_demo / "provenance/provenance.csv")
    assert {"python", "torch", "torchvision", "snakemake", "pandas", "pyarrow", "numpy", "galsim"} <= set(
        provenance.loc[provenance["section"] == "package", "item"]
    )
    items = provenance.set_index("item")["value"]
    assert len(items["catalog SHA-256"]) == 64 and len(items["packed images SHA-256"]) == 64
    assert items["training device"].startswith("cpu")
    # the tiny demo's object_cut warnings keep their rows: nothing is excluded
    assert items["catalog rows"] == "60" and items["rows excluded by validation (integrity table)"] == "0"
    assert items["catalog SHA-256"] == hashlib.sha256((tiny_demo / "demo/catalog.csv").read_bytes()).hexdigest()
    assert items["target.keep"] == '["low", "high"]'


def hostile_labels(secret: Path) -> list[str]:
    """Class labels that try every way into the page: RST directives (raw, include, csv-table and raw
    with :file:), roles, substitutions, references, HTML and a script-closing tag, over several lines.
    An element a payload creates would carry ``id="injected-..."``; their own text never does."""
    run = "document.title=/pwned/.source"
    return [
        f"<script>{run}</script>\n\n.. raw:: html\n\n   <img src=x id=injected-raw onerror={run}>\n",
        f"a\n\n.. include:: {secret}\n\n.. csv-table:: t\n   :file: {secret}\n\n.. raw:: html\n   :file: {secret}\n",
        f"|sub|\n\n.. |sub| raw:: html\n\n   <img src=x id=injected-sub onerror={run}>\n\n"
        f".. role:: raw-html(raw)\n   :format: html\n\n:raw-html:`<img src=x id=injected-role onerror={run}>`",
        f"</script><img src=x id=injected-json onerror={run}> `link <javascript:{run}>`_ **b** [1]_",
    ]


@pytest.mark.parametrize("index", range(4))
def test_rst_text_renders_every_payload_as_its_own_text(tmp_path: Path, index: int) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("token-" + uuid.uuid4().hex)
    payload = hostile_labels(secret)[index]
    # docutils' defaults (raw and file insertion on): the escaping alone must keep the payload text
    body = publish_parts(f"- Class {rst_text(payload)}: 3 rows.", writer="html")["body"]
    assert "system-message" not in body and "<img" not in body and "<script" not in body and "token-" not in body
    text = html.unescape(re.sub(r"<[^>]+>", "", body))
    assert " ".join(text.split()) == " ".join(f"Class {payload}: 3 rows.".split())
    assert "<" not in script_safe_dumps({"label": payload}) and json.loads(script_safe_dumps(payload)) == payload
    # counterfactual: the same text unescaped is live markup for docutils
    raw = publish_parts(f"- Class {payload}: 3 rows.", writer="html")["body"]
    assert "<img src=x id=injected" in raw or "token-" in raw or 'href="javascript' in raw


@pytest.mark.browser
def test_catalog_and_config_strings_are_inert_in_the_report(tiny_demo: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    token = "token-" + uuid.uuid4().hex
    secret.write_text(token)
    payloads = hostile_labels(secret)
    labels_in = [payloads[0] + payloads[1], payloads[2] + payloads[3]]  # two learnable classes: low, high
    column = "kind <b id=injected-column>:raw-html:`x` |s|"
    catalog = pd.read_csv(tiny_demo / "demo/catalog.csv", dtype={"objID": str})
    metallicity = catalog["metallicity"]
    catalog = catalog[(metallicity <= 8.7) | (metallicity > 9.1)].copy()  # the demo's low and high classes
    catalog[column] = np.where(catalog["metallicity"] <= 8.7, *labels_in)
    extra = catalog.iloc[[0]].assign(objID="<b>bold</b>")  # an unsafe id: listed in the integrity table
    pd.concat([catalog, extra]).to_csv(tmp_path / "catalog.csv", index=False)
    config = {
        "catalog": str(tmp_path / "catalog.csv"),
        "images": str(tiny_demo / "demo/images/{id}.jpg"),
        "target": {"column": column, "labels": labels_in},  # config strings too: they reach job params
        "image": {"size": 32},
        "train": {"epochs": 2, "lr": 0.02, "batch_size": 16},
        "saliency": {"gallery": {"n": 3}},
    }
    results = tmp_path / "results"
    report = make_report(config, results, "--replace-workflow-config")
    # a categorical target from the schema's defaults and the given class order; no demo is made
    labels = pd.read_parquet(results / "classes/labels.parquet")
    assert list(labels["class"].cat.categories) == labels_in
    assert (labels["class"].astype(str) == labels["target"]).all() and len(labels) == len(catalog)
    assert np.load(results / "images/images.npy", mmap_mode="r").shape == (len(catalog), 32, 32, 3)
    assert not (results / "demo").exists()
    metrics = json.loads((results / "eval/metrics.json").read_text())
    assert metrics["classes"] == labels_in and metrics["n_valid"] == (labels["split"] == "valid").sum()
    assert {p.name for p in (results / "saliency/galleries").iterdir()} >= {"random.png", "top-losses.png"}

    dom = chromium("--dump-dom", report.as_uri()).stdout
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert title is not None and "pwned" not in title.group(1), "a catalog string ran as code in the report"
    assert 'id="injected' not in dom, "a catalog or config string became an element of the page"
    assert token not in dom, "a catalog string pulled a local file into the report"
    assert "<b>bold</b>" not in dom and "<img src=x" not in dom  # shown as text, never parsed as tags
    text = html.unescape(re.sub(r"<[^>]+>", " ", dom))
    assert ".. raw:: html" in text and ".. include::" in text and "Headline findings" in text  # shown, escaped
