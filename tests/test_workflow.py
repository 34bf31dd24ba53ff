"""End-to-end: the real workflow on a tiny GalSim demo, checking what the outputs contain."""

import hashlib
import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import torch
import torchvision.models as tvm
from PIL import Image

from helpers import DEMO_TARGET, REPO, TINY_DEMO, run_workflow
from saliency_audit.audit.tables import read_audit_metadata
from saliency_audit.data.image_io import Decoding, center_crop_pad, image_path, load_image, open_packed
from saliency_audit.data.regions import threshold_regions
from saliency_audit.model.batches import to_tensor
from saliency_audit.model.checkpoint import load_checkpoint
from saliency_audit.model.evaluation import evaluation, predictions_table
from saliency_audit.model.training import RESUME_NAME, predict_logits
from saliency_audit.runtime.job import read_peak_memory
from saliency_audit.saliency.interventions import margins

pytestmark = pytest.mark.workflow  # every test here runs Snakemake


def strict_json(constant: str) -> None:
    """``parse_constant`` hook: JSON has no NaN or Infinity, so strict readers reject them."""
    raise AssertionError(f"{constant} in a JSON output")


def test_demo_catalog_images_and_masks(tiny_demo: Path) -> None:
    catalog = pd.read_csv(tiny_demo / "demo/catalog.csv", dtype={"objID": str})
    assert len(catalog) == 60
    assert catalog["objID"].is_unique
    assert all(int(i) > 2**53 for i in catalog["objID"])  # SDSS-sized ids, kept exact as text
    for obj_id in catalog["objID"]:
        with Image.open(tiny_demo / f"demo/images/{obj_id}.jpg") as image:
            assert image.mode == "RGB" and image.size == (64, 64)
        mask = np.asarray(Image.open(tiny_demo / f"demo/masks/{obj_id}.png"))
        assert mask.shape == (64, 64) and mask[32, 32] == 255  # the central galaxy is in its mask
    high = pd.cut(catalog["metallicity"], [8.1, 8.7, 9.1, 9.3], labels=["low", "medium", "high"]) == "high"
    assert catalog.loc[high, "shortcut"].sum() == round(0.5 * high.sum())
    assert catalog.loc[~high, "shortcut"].sum() == 0
    planted = catalog[catalog["shortcut"] == 1]
    for _, row in planted.iterrows():
        mask = np.asarray(Image.open(tiny_demo / f"demo/masks/{row['objID']}.png")) > 0
        x, y = int(round(row["shortcut_x"])), int(round(row["shortcut_y"]))
        assert not mask[y, x], "the shortcut star must sit off the galaxy"
        image = np.asarray(Image.open(tiny_demo / f"demo/images/{row['objID']}.jpg"), dtype=float)
        assert image[y, x].mean() > 200, "the shortcut star must be bright where the catalog says"


def test_the_demo_has_no_problems_but_its_crop_warnings(tiny_demo: Path) -> None:
    # the tiny demo crops its 64 px stamps to image.size 48: extended galaxies lose their outskirts
    integrity = pd.read_csv(tiny_demo / "catalog/integrity.csv", dtype={"id": str})
    assert list(integrity.columns) == ["row", "id", "problem", "detail"]
    assert set(integrity["problem"]) == {"object_cut"}
    assert integrity["detail"].str.contains(r"is 64x64; the central 48x48 crop \(image.size\) cuts").all()
    clean = pd.read_parquet(tiny_demo / "catalog/clean.parquet")
    assert len(clean) == TINY_DEMO["demo"]["n_galaxies"] and set(integrity["id"]) < set(clean["id"])


def test_labels_follow_the_configured_bins(tiny_demo: Path) -> None:
    catalog = pd.read_csv(tiny_demo / "demo/catalog.csv", dtype={"objID": str}).set_index("objID")
    labels = pd.read_parquet(tiny_demo / "classes/labels.parquet")
    assert list(labels.columns) == ["id", "target", "class", "split"]
    assert list(labels["class"].cat.categories) == ["low", "high"]
    expected = pd.cut(catalog["metallicity"], [8.1, 8.7, 9.1, 9.3], labels=["low", "medium", "high"])
    kept = expected[expected.isin(["low", "high"])]
    assert sorted(labels["id"]) == sorted(kept.index)
    assert (labels.set_index("id")["class"].astype(str) == kept.astype(str).reindex(labels["id"])).all()
    np.testing.assert_allclose(labels["target"], catalog.loc[labels["id"], "metallicity"])
    for _, group in labels.groupby("class", observed=True):
        assert abs((group["split"] == "valid").mean() - 0.2) <= 0.5 / len(group) + 1e-9
    counts = pd.read_csv(tiny_demo / "classes/class_counts.csv").set_index("class")
    assert counts.loc["medium", "kept"] == False  # noqa: E712
    assert counts.loc["low", "train"] + counts.loc["low", "valid"] == (labels["class"] == "low").sum()


def test_packed_images_equal_decoded_and_cropped_jpegs(tiny_demo: Path) -> None:
    labels = pd.read_parquet(tiny_demo / "classes/labels.parquet")
    index = pd.read_parquet(tiny_demo / "images/index.parquet")
    packed = np.load(tiny_demo / "images/images.npy", mmap_mode="r")
    assert packed.shape == (len(labels), 48, 48, 3) and packed.dtype == np.uint8
    assert list(index["id"]) == list(labels["id"]) and list(index["row"]) == list(range(len(labels)))
    for row, obj_id in zip(index["row"], index["id"]):
        decoded = np.asarray(Image.open(tiny_demo / f"demo/images/{obj_id}.jpg").convert("RGB"))
        np.testing.assert_array_equal(packed[row], decoded[8:56, 8:56])
        np.testing.assert_array_equal(
            packed[row], center_crop_pad(load_image(tiny_demo / f"demo/images/{obj_id}.jpg", 10**6), 48)
        )


def test_figures_are_real_images(tiny_demo: Path) -> None:
    for figure in ("demo/preview.png", "classes/target_histogram.png"):
        pixels = np.asarray(Image.open(tiny_demo / figure).convert("L"), dtype=float)
        assert pixels.shape[0] > 300 and pixels.shape[1] > 600
        assert pixels.std() > 10, f"{figure} looks blank"


def test_finished_run_has_nothing_left_to_do(tiny_demo: Path) -> None:
    done = run_workflow(TINY_DEMO, tiny_demo, "-n")
    assert "Nothing to be done" in done.stdout + done.stderr


def read_output(path: Path) -> None:
    """Open one output with the reader a user would use for it; raises if it is damaged or half-written."""
    readers = {
        ".parquet": pq.read_table,
        ".csv": lambda p: pd.read_csv(p, dtype=str, keep_default_na=False),
        ".json": lambda p: json.loads(p.read_text(), parse_constant=strict_json),
        ".npy": lambda p: np.load(p, mmap_mode="r"),
        ".npz": lambda p: dict(np.load(p)),
        ".pt": lambda p: torch.load(p, weights_only=True),
        ".png": lambda p: Image.open(p).load(),
        ".jpg": lambda p: Image.open(p).load(),
        ".html": lambda p: HTMLParser().feed(p.read_text(encoding="utf-8")),
    }
    assert path.suffix in readers, f"no reader for {path}"
    readers[path.suffix](path)


def test_every_declared_output_is_in_results_non_empty_and_readable(tiny_demo: Path) -> None:
    """Every output of every job (Snakemake's own list, --summary) lies under results, is not empty, and opens
    with its reader; and the run wrote nothing into the repository (but Snakemake's own .snakemake)."""
    started = (tiny_demo.parent / f"{tiny_demo.name}-config.yaml").stat().st_mtime
    summary = run_workflow(TINY_DEMO, tiny_demo, "--summary").stdout.splitlines()
    assert summary[0].startswith("output_file\t")
    outputs = [Path(line.split("\t")[0]) for line in summary[1:] if line.strip()]
    assert len(outputs) > 40
    for output in outputs:
        assert output.is_relative_to(tiny_demo), output
        files = [output]
        if output.is_dir():  # a directory output: its files, but Snakemake's own time stamp
            files = sorted(p for p in output.rglob("*") if p.is_file() and p.name != ".snakemake_timestamp")
        assert files, f"{output} is an empty folder"
        for path in files:
            assert path.stat().st_size > 0, path
            read_output(path)
    skip = {".git", ".venv", ".snakemake", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}
    stray = []
    for folder, subfolders, names in os.walk(REPO):
        subfolders[:] = [d for d in subfolders if d not in skip]
        stray += [Path(folder, n) for n in names if Path(folder, n).stat().st_mtime >= started]
    assert not stray, f"written outside the results folder: {stray}"


def test_every_job_log_ends_with_its_peak_memory(tiny_demo: Path) -> None:
    logs = sorted((tiny_demo / "logs").rglob("*.log"))
    assert len(logs) >= 12, logs
    peaks = {log.relative_to(tiny_demo).as_posix(): read_peak_memory(log) for log in logs}
    missing = [name for name, peak in peaks.items() if peak is None or peak < 20]
    assert not missing, peaks
    assert peaks["logs/train.log"] > peaks["logs/bin_classes.log"] + 100, "training loads torch, binning does not"


def test_bad_catalog_rows_are_reported_and_good_rows_go_on(tiny_demo: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    shutil.copytree(tiny_demo / "demo/images", images)
    catalog = pd.read_csv(tiny_demo / "demo/catalog.csv", dtype={"objID": str})
    ids = catalog["objID"].tolist()
    good = len(catalog)
    # rows that must be excluded, one problem each
    (images / f"{ids[0]}.jpg").unlink()  # missing image
    corrupt = images / f"{ids[1]}.jpg"
    corrupt.write_bytes(corrupt.read_bytes()[:300])  # truncated JPEG
    catalog.loc[2, "metallicity"] = np.nan  # empty target
    (images / f"{ids[3]}.jpg").write_bytes(b"")  # zero-byte file
    (images / f"{ids[4]}.jpg").write_text("<html>404 Not Found</html>")  # a failed download, not an image
    catalog.loc[5, "metallicity"] = -9999  # sentinel listed in target.invalid
    catalog.loc[6, "metallicity"] = np.inf
    # rows that must be kept: other modes and sizes are converted, surrounding whitespace is stripped
    rgb = np.asarray(Image.open(images / f"{ids[7]}.jpg"))
    Image.fromarray(rgb.mean(axis=2).astype(np.uint8)).save(images / f"{ids[7]}.jpg", format="JPEG")  # grayscale
    Image.fromarray(rgb).convert("RGBA").save(images / f"{ids[8]}.jpg", format="PNG")  # RGBA, PNG content
    Image.fromarray(rgb).convert("P").save(images / f"{ids[9]}.jpg", format="PNG")  # palette
    deep = (rgb.mean(axis=2) * 257).astype(np.uint16)
    Image.fromarray(deep).save(images / f"{ids[10]}.jpg", format="PNG")  # 16-bit grayscale
    Image.fromarray(rgb[5:, 3:]).save(images / f"{ids[11]}.jpg", format="JPEG")  # 59 x 61: padded
    catalog["objID"] = catalog["objID"].astype(object)
    catalog.loc[12, "objID"] = f"  {ids[12]}\t"
    extra = catalog.iloc[[13, 13]].copy()
    extra.iloc[1, extra.columns.get_loc("objID")] = "../../x"
    catalog = pd.concat([catalog, extra], ignore_index=True)  # a duplicate id and an unsafe id
    catalog.to_csv(tmp_path / "catalog.csv", index=False)

    results = tmp_path / "results"
    config = {
        **TINY_DEMO,
        "catalog": str(tmp_path / "catalog.csv"),
        "images": str(images / "{id}.jpg"),
        "target": {**DEMO_TARGET, "invalid": [-9999]},
        "saliency": {"object": {"method": "masks", "masks": str(tiny_demo / "demo/masks/{id}.png")}},
    }
    run_workflow(config, results)
    integrity = pd.read_csv(results / "catalog/integrity.csv", dtype={"id": str})
    problems = integrity[integrity["problem"] != "object_cut"]  # crop warnings keep their rows
    assert list(zip(problems["row"], problems["problem"])) == [
        (1, "missing_image"), (2, "unreadable_image"), (3, "missing_target"), (4, "unreadable_image"),
        (5, "unreadable_image"), (6, "invalid_target"), (7, "non_finite_target"),
        (good + 1, "duplicate_id"), (good + 2, "unsafe_id"),
    ]  # fmt: skip
    assert "is an empty file" in problems["detail"].iloc[3] and "cannot identify image" in problems["detail"].iloc[4]
    assert problems.set_index("problem").loc["unsafe_id", "id"] == "../../x"
    clean = pd.read_parquet(results / "catalog/clean.parquet")
    assert len(clean) == good - 7 and set(clean["id"]) == set(ids[7:])
    labels = pd.read_parquet(results / "classes/labels.parquet")
    packed = np.load(results / "images/images.npy", mmap_mode="r")
    assert len(packed) == len(labels) and set(labels["id"]) <= set(clean["id"])
    rows = dict(zip(labels["id"], range(len(labels))))
    grays = [packed[rows[i]] for i in (ids[7], ids[10]) if i in rows]  # the demo is seeded: this never changes
    assert grays, "neither grayscale image fell in a kept class"
    for gray in grays:  # packed as three equal channels
        assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all() and gray.any()
    # the cropped image keeps its row, but the demo's 64 x 64 mask no longer fits its 61 x 59 pixels
    regions = pd.read_csv(results / "saliency/region_problems.csv", dtype={"id": str})
    cropped = [ids[11]] if ids[11] in set(labels["id"]) else []
    assert regions["id"].tolist() == cropped and set(regions["problem"]) <= {"mask_size_mismatch"}
    stats = pd.read_parquet(results / "saliency/stats.parquet")
    assert sorted(stats["id"]) == sorted(set(labels["id"]) - set(cropped))  # the good rows reach the end

    # Reruns follow content. An unrelated new column and a deleted images.npy (gathered again with the
    # same pixels) rerun validation and packing, but training, evaluation and the audit reuse their outputs.
    model = (results / "model/model.pt").read_bytes()
    targets = [str(results / "audit/part-0.parquet"), str(results / "eval/metrics.json")]
    catalog.assign(notes="checked by eye").to_csv(tmp_path / "catalog.csv", index=False)
    (results / "images/images.npy").unlink()
    log = run_workflow(config, results, *targets).stderr
    assert "rule validate_catalog:" in log and "rule gather_images:" in log
    for job in ("train", "evaluate", "audit/0"):
        assert "reused the outputs of an earlier run" in (results / f"logs/{job}.log").read_text(), job
    assert (results / "model/model.pt").read_bytes() == model
    assert "notes" in pd.read_parquet(results / "catalog/clean.parquet").columns
    assert "Nothing to be done" in run_workflow(config, results, "-n", *targets).stdout
    # A download fixed afterwards and an image replaced by another are noticed, with no file named as an
    # input: the missing row joins the catalog, the new pixels are packed and the model is trained again.
    shutil.copy(tiny_demo / f"demo/images/{ids[0]}.jpg", images / f"{ids[0]}.jpg")
    kept = [i for i in labels["id"] if i != ids[11]]
    replaced = kept[0]
    shutil.copy(images / f"{kept[1]}.jpg", images / f"{replaced}.jpg")
    log = run_workflow(config, results, *targets).stderr
    assert "rule validate_catalog:" in log and "rule train:" in log
    assert "reused" not in (results / "logs/train.log").read_text()
    assert (results / "model/model.pt").read_bytes() != model
    assert ids[0] in set(pd.read_parquet(results / "catalog/clean.parquet")["id"])
    labels_after = pd.read_parquet(results / "classes/labels.parquet")
    rows_after = dict(zip(labels_after["id"], range(len(labels_after))))
    packed = np.load(results / "images/images.npy", mmap_mode="r")
    np.testing.assert_array_equal(packed[rows_after[replaced]], packed[rows_after[kept[1]]])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ('image={"size": -5}', "image.size: -5 is less than the minimum of 8"),
        ('train={"epoch": 5}', "'epoch' was unexpected"),
        ('target={"keep": ["low", "top"]}', "target.keep names ['top']"),
        ('target={"bins": [8.1, 9.1, 8.7, 9.3]}', "target.bins must increase strictly"),
        ("images=images/x.jpg", "key images: 'images/x.jpg' does not match"),
        ("results=runs/{date}", "config key results: 'runs/{date}' holds braces"),
        ('audit={"layer": "body.9"}', "config key audit.layer 'body.9' is not a module of this model"),
    ],
)
def test_bad_config_fails_before_any_job(tmp_path: Path, override: str, message: str) -> None:
    results = tmp_path / "results"
    done = run_workflow(TINY_DEMO, results, "--config", override, check=False)
    assert done.returncode != 0
    assert message in done.stdout + done.stderr
    assert not any(results.iterdir()), "no job may run with an invalid config"


def test_dry_run_lists_every_stage(tmp_path: Path) -> None:
    done = run_workflow(TINY_DEMO, tmp_path / "results", "-n")
    out = done.stdout + done.stderr
    for rule in ("simulate_demo", "validate_catalog", "bin_classes", "pack_images", "gather_images", "train",
                 "evaluate", "audit", "regions", "probes", "pca", "saliency_stats", "strategy_clusters",
                 "score_twins", "saliency_summary", "galleries", "backgrounds", "near_duplicates",
                 "label_problems", "explorer"):  # fmt: skip
        assert rule in out
    assert not any((tmp_path / "results").iterdir())


def test_evaluate_scores_the_audit_pass_exactly_as_its_own_forward_pass_did(tiny_demo: Path, tmp_path: Path) -> None:
    """evaluate reads the audit pass's predictions instead of predicting again: the metrics equal those of a
    fresh forward pass of the checkpoint over every packed image (what evaluate used to run) to 1e-6."""
    plan = run_workflow(TINY_DEMO, tmp_path / "plan", "-n", str(tmp_path / "plan/eval/metrics.json")).stdout
    assert "rule audit:" in plan, "the audit pass is upstream of the metrics"
    model, meta = load_checkpoint(tiny_demo / "model/model.pt", torch.device("cpu"))
    labels = pd.read_parquet(tiny_demo / "classes/labels.parquet")
    images = open_packed(tiny_demo / "images/images.npy")
    logits = predict_logits(model, images, np.arange(len(images)), meta["mean"], meta["std"], 64, torch.device("cpu"))
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    expected = evaluation(predictions_table(labels, probs, meta["classes"]), meta["classes"])
    actual = json.loads((tiny_demo / "eval/metrics.json").read_text())
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, float):
            assert actual[key] == pytest.approx(value, abs=1e-6), key
        else:
            assert actual[key] == value, key
    stored = pd.read_parquet(tiny_demo / "eval/predictions.parquet")
    np.testing.assert_allclose(stored[[f"prob_{c}" for c in meta["classes"]]].to_numpy(), probs, atol=1e-6)
    # the audit keeps the logits, and the probes take the unchanged view's margins from them
    audit = pq.read_table(tiny_demo / "audit/part-0.parquet").to_pandas().set_index("id")
    order = labels["id"].astype(str)
    logit_columns = [f"logit_{c}" for c in meta["classes"]]
    np.testing.assert_allclose(audit.loc[order, logit_columns].to_numpy(), logits, rtol=1e-5, atol=1e-5)
    stats = pd.read_parquet(tiny_demo / "saliency/stats.parquet").set_index("id")
    expected_margins = margins(pd.DataFrame(logits, index=order).loc[stats.index].to_numpy())
    np.testing.assert_allclose(stats[[f"margin_{c}" for c in meta["classes"]]], expected_margins, atol=1e-4)


def test_training_and_evaluation_outputs(tiny_demo: Path) -> None:
    history = pd.read_csv(tiny_demo / "model/history.csv")
    assert history["epoch"].tolist() == [1, 2]
    assert (history["data_seconds"] < history["train_seconds"]).all()
    checkpoint = torch.load(tiny_demo / "model/model.pt", weights_only=True)
    assert checkpoint["classes"] == ["low", "high"] and checkpoint["image_size"] == 48
    assert checkpoint["arch"] == "simple_cnn" and checkpoint["target_layer"] == "body.2"
    assert not (tiny_demo / "model" / RESUME_NAME).exists(), "the per-epoch state goes once training is done"

    labels = pd.read_parquet(tiny_demo / "classes/labels.parquet")
    predictions = pd.read_parquet(tiny_demo / "eval/predictions.parquet")
    assert list(predictions.columns) == ["id", "split", "label", "predicted", "prob_low", "prob_high"]
    assert predictions["id"].tolist() == labels["id"].tolist()
    assert (predictions["label"].astype(str) == labels["class"].astype(str)).all()
    probs = predictions[["prob_low", "prob_high"]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert (predictions["predicted"].cat.codes.to_numpy() == probs.argmax(1)).all()

    metrics = json.loads((tiny_demo / "eval/metrics.json").read_text())
    valid = predictions[predictions["split"] == "valid"]
    assert metrics["n_valid"] == len(valid) and np.sum(metrics["confusion_matrix"]) == len(valid)
    assert metrics["accuracy"] == pytest.approx((valid["label"] == valid["predicted"]).mean())
    assert 0 <= metrics["roc_auc"] <= 1 and 0 <= metrics["f1"] <= 1
    for figure in (
        "model/training_curve.png",
        "eval/confusion_matrix.png",
        "eval/roc_curve.png",
        "eval/top_losses.png",
    ):
        assert np.asarray(Image.open(tiny_demo / figure).convert("L"), dtype=float).std() > 10, figure


def test_three_classes_train_and_evaluate_from_five_band_float_fits_cubes(tiny_demo: Path, tmp_path: Path) -> None:
    from astropy.io import fits

    cutouts = tmp_path / "fits"
    cutouts.mkdir()
    for jpeg in sorted((tiny_demo / "demo/images").glob("*.jpg")):  # calibrated fluxes of order 0.01, bands first
        rgb = np.asarray(Image.open(jpeg), dtype=np.float32).transpose(2, 0, 1) / 255 * 0.02
        flux = np.concatenate([rgb[:1] * 1.3, rgb, rgb[2:] * 0.6])  # five bands: z, i, r, g, u
        flux[:, 0, :2] = np.nan  # a blank corner
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.flip(flux, axis=1), name="SCI")]).writeto(
            cutouts / f"{jpeg.stem}.fits.gz"
        )
    config = {
        **TINY_DEMO,
        "catalog": str(tiny_demo / "demo/catalog.csv"),
        "images": str(cutouts / "{id}.fits.gz"),
        "saliency": {"object": {"method": "masks", "masks": str(tiny_demo / "demo/masks/{id}.png")}},
        "target": {**DEMO_TARGET, "keep": ["low", "medium", "high"]},
        # ResNet-18's 2 x 2 maps at 32 px: enough to check shapes, four times faster
        "image": {"size": 32, "stretch": "asinh", "hdu": "SCI", "channels": 5},
        "model": {"arch": "resnet18"},
        "train": {"epochs": 2, "lr": 0.001, "batch_size": 16},
    }
    results = tmp_path / "results"
    run_workflow(config, results)
    metrics = json.loads((results / "eval/metrics.json").read_text())
    assert metrics["classes"] == ["low", "medium", "high"]
    assert np.asarray(metrics["confusion_matrix"]).shape == (3, 3)
    assert 0 <= metrics["roc_auc"] <= 1
    predictions = pd.read_parquet(results / "eval/predictions.parquet")
    assert [c for c in predictions.columns if c.startswith("prob_")] == ["prob_low", "prob_medium", "prob_high"]
    checkpoint = torch.load(results / "model/model.pt", weights_only=True)
    assert checkpoint["arch"] == "resnet18" and checkpoint["channels"] == 5 and len(checkpoint["mean"]) == 5
    assert checkpoint["state_dict"]["body.conv1.weight"].shape[1] == 5
    stats = pd.read_parquet(results / "saliency/stats.parquet")  # three classes
    assert {"energy_in_object_low", "energy_in_object_medium", "energy_in_object_high"} <= set(stats.columns)
    assert len(stats) == len(predictions)
    # the packed pixels are the asinh-stretched fluxes, not black; the blank corner is a warning, not a loss
    packed, index = open_packed(results / "images/images.npy"), pd.read_parquet(results / "images/index.parquet")
    first = index["id"].iloc[0]
    decoding = Decoding("asinh", 0.1, "SCI", channels=5)
    expected = center_crop_pad(load_image(cutouts / f"{first}.fits.gz", 10**6, decoding), 32)
    assert packed.shape[1:] == (32, 32, 5)
    np.testing.assert_array_equal(packed[0], expected)
    assert packed.mean() > 20 and np.median(packed.std(axis=(1, 2, 3))) > 10
    integrity = pd.read_csv(results / "catalog/integrity.csv")
    assert (integrity["problem"] == "non_finite_pixels").sum() == len(list(cutouts.glob("*.fits.gz")))


def test_a_regression_of_two_per_band_fits_files_runs_end_to_end_on_its_directions(
    tiny_demo: Path, tmp_path: Path
) -> None:
    from astropy.io import fits

    bands = tmp_path / "bands"
    for band in "ir":
        (bands / band).mkdir(parents=True)
    for jpeg in sorted((tiny_demo / "demo/images").glob("*.jpg")):  # one file per band, fluxes of order 0.01
        flux = np.asarray(Image.open(jpeg), dtype=np.float32) / 255 * 0.02
        for k, band in enumerate("ir"):
            fits.PrimaryHDU(np.flipud(flux[..., k])).writeto(bands / band / f"{jpeg.stem}.fits")
    config = {
        **TINY_DEMO,
        "catalog": str(tiny_demo / "demo/catalog.csv"),
        "images": str(bands / "{band}" / "{id}.fits"),
        "image": {**TINY_DEMO["image"], "bands": ["i", "r"]},
        "saliency": {"object": {"method": "masks", "masks": str(tiny_demo / "demo/masks/{id}.png")}},
        "target": {**DEMO_TARGET, "task": "regression", "keep": ["low", "medium", "high"]},
        "train": {"epochs": 4, "lr": 0.01, "batch_size": 16},
    }  # fmt: skip
    results = tmp_path / "results"
    run_workflow(config, results)
    labels = pd.read_parquet(results / "classes/labels.parquet")
    clean = pd.read_parquet(results / "catalog/clean.parquet")
    assert clean["image"].iloc[0] == str(bands / "{band}" / f"{clean['id'].iloc[0]}.fits")
    catalog = pd.read_csv(tiny_demo / "demo/catalog.csv", dtype={"objID": str}).set_index("objID")
    np.testing.assert_allclose(labels["target"], catalog.loc[labels["id"], "metallicity"])
    mean = labels.loc[labels["split"] == "train", "target"].mean()
    assert ((labels["class"] == "higher") == (labels["target"] > mean)).all()
    # the model's value, from the checkpoint, against the audit's direction logits and evaluate's table
    checkpoint = torch.load(results / "model/model.pt", weights_only=True)
    assert checkpoint["task"] == "regression" and checkpoint["target_mean"] == pytest.approx(mean)
    model, meta = load_checkpoint(results / "model/model.pt")
    images = open_packed(results / "images/images.npy")
    first = image_path(str(bands / "{band}" / "{id}.fits"), labels["id"].iloc[0])
    decoding = Decoding("linear", 0.1, None, ("i", "r"), channels=2)
    assert images.shape[-1] == 2 and meta["channels"] == 2
    np.testing.assert_array_equal(images[0], center_crop_pad(load_image(first, 10**6, decoding), 48))
    with torch.no_grad():
        expected = (
            meta["target_mean"]
            + meta["target_scale"]
            * model.head.value(
                model.features(to_tensor(np.asarray(images), meta["mean"], meta["std"], torch.device("cpu")))
            )[:, 0].numpy()
        )
    predictions = pd.read_parquet(results / "eval/predictions.parquet")
    np.testing.assert_allclose(predictions["predicted_value"], expected, rtol=1e-5, atol=1e-5)
    audit = pq.read_table(results / "audit/part-0.parquet").to_pandas()
    np.testing.assert_allclose(audit["logit_higher"], -audit["logit_lower"], atol=1e-6)
    np.testing.assert_allclose(2 * audit["logit_higher"], expected - mean, atol=1e-4)
    metrics = json.loads((results / "eval/metrics.json").read_text())
    valid = (predictions["split"] == "valid").to_numpy()
    residuals = expected[valid] - labels["target"].to_numpy()[valid]
    assert metrics["task"] == "regression" and metrics["classes"] == ["lower", "higher"]
    assert metrics["rmse"] == pytest.approx(np.sqrt(np.mean(residuals**2)), rel=1e-4)
    # the probes' margin is the distance of the prediction from the training mean
    probes = pd.concat(pd.read_parquet(p) for p in sorted((results / "probes").glob("part-*.parquet")))
    probes = probes.set_index("id").loc[labels["id"]]
    higher = expected > mean
    margin = np.where(higher, probes["margin_higher"], probes["margin_lower"])
    np.testing.assert_allclose(margin, np.abs(expected - mean), atol=1e-4)
    for figure in ("eval/predicted_vs_true.png", "pca/pca_scatter.png", "model/training_curve.png"):
        assert np.asarray(Image.open(results / figure).convert("L"), dtype=float).std() > 10, figure


def test_compile_reaches_training_evaluation_and_the_audit(tiny_demo: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(tiny_demo, results)
    config = {**TINY_DEMO, "train": {**TINY_DEMO["train"], "compile": True}, "audit": {"compile": True}}
    done = run_workflow(config, results, "--forcerun", "train", "--until", "evaluate")  # the audit is upstream
    log = done.stdout + done.stderr
    assert all(f"rule {rule}:" in log for rule in ("train", "evaluate", "audit"))
    assert torch.load(results / "model/model.pt", weights_only=True)["train"]["compile"] is True
    audit = pq.read_table(results / "audit/part-0.parquet")
    assert read_audit_metadata(audit.schema)["compiled"] is True
    predictions = pd.read_parquet(results / "eval/predictions.parquet")
    np.testing.assert_allclose(audit.column("prob_high").to_numpy(), predictions["prob_high"], rtol=1e-4, atol=1e-6)
    assert read_audit_metadata(pq.read_schema(tiny_demo / "audit/part-0.parquet"))["compiled"] is False


def test_audit_and_pca_cover_every_kept_image(tiny_demo: Path) -> None:
    labels = pd.read_parquet(tiny_demo / "classes/labels.parquet")
    audit = pq.read_table(tiny_demo / "audit/part-0.parquet")
    assert audit.column("id").to_pylist() == labels["id"].tolist()
    metadata = read_audit_metadata(audit.schema)
    assert metadata["classes"] == ["low", "high"] and metadata["map_shape"] == [6, 6]
    assert metadata["layer"] == "body.2" and len(metadata["model_sha256"]) == 64
    assert metadata["map_geometry"] == {"origin": [0.0, 0.0], "stride": [8.0, 8.0]}  # 3 convs of stride 2, padding 1
    predictions = pd.read_parquet(tiny_demo / "eval/predictions.parquet")
    np.testing.assert_allclose(audit.column("prob_high").to_numpy(), predictions["prob_high"], rtol=1e-4, atol=1e-6)

    pcs = pd.read_parquet(tiny_demo / "pca/pca.parquet")
    assert list(pcs.columns) == ["id", "pc1", "pc2", "pc3"] and pcs["id"].tolist() == labels["id"].tolist()
    np.testing.assert_allclose(pcs[["pc1", "pc2", "pc3"]].var(ddof=1), 1.0, rtol=1e-6)  # whitened
    summary = json.loads((tiny_demo / "pca/pca.json").read_text())
    assert summary["n_samples"] == len(labels) and len(summary["components"]) == 3
    assert summary["explained_variance_ratio"] == sorted(summary["explained_variance_ratio"], reverse=True)
    for figure in ("pca/pca_scatter.png", "pca/pca_thumbnails.png", "pca/explained_variance.png"):
        assert np.asarray(Image.open(tiny_demo / figure).convert("L"), dtype=float).std() > 10, figure


def test_three_audit_shards_equal_one(tiny_demo: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(tiny_demo, results)  # a copy has no run metadata: drop the one-shard packing by hand
    shutil.rmtree(results / "audit")
    (results / "images/part-0.npy").unlink()
    done = run_workflow({**TINY_DEMO, "audit": {"shards": 3}}, results)
    log = done.stdout + done.stderr
    # packing is split three ways and gathered again; the same pixels keep the same model
    assert log.count("rule pack_images:") == 3 and "rule gather_images:" in log
    assert log.count("rule probes:") == 3 and log.count("rule regions:") == 3
    assert "rule train:" not in log and "rule evaluate:" in log  # evaluate scores the three parts' predictions
    sharded_metrics = json.loads((results / "eval/metrics.json").read_text())
    single_metrics = json.loads((tiny_demo / "eval/metrics.json").read_text())
    assert sharded_metrics["confusion_matrix"] == single_metrics["confusion_matrix"]
    assert sharded_metrics["roc_auc"] == pytest.approx(single_metrics["roc_auc"], abs=1e-6)
    assert [len(np.load(results / f"images/part-{i}.npy", mmap_mode="r")) for i in range(3)] == [
        len(rows) for rows in np.array_split(np.arange(len(np.load(results / "images/images.npy", mmap_mode="r"))), 3)
    ]
    np.testing.assert_array_equal(np.load(results / "images/images.npy"), np.load(tiny_demo / "images/images.npy"))
    parts = sorted((results / "audit").glob("part-*.parquet"))
    assert [p.name for p in parts] == ["part-0.parquet", "part-1.parquet", "part-2.parquet"]
    three = ds.dataset([str(p) for p in parts], format="parquet").to_table().to_pandas()
    one = pq.read_table(tiny_demo / "audit/part-0.parquet").to_pandas()
    pd.testing.assert_frame_equal(
        three[["id", "split", "label", "predicted"]], one[["id", "split", "label", "predicted"]]
    )
    for column in ("activation", "cam_low", "cam_high"):
        np.testing.assert_allclose(np.stack(three[column]), np.stack(one[column]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        pd.read_parquet(results / "pca/pca.parquet")[["pc1", "pc2"]].abs(),
        pd.read_parquet(tiny_demo / "pca/pca.parquet")[["pc1", "pc2"]].abs(),
        rtol=1e-4,
        atol=1e-6,
    )
    sharded = pd.read_parquet(results / "saliency/stats.parquet")
    single = pd.read_parquet(tiny_demo / "saliency/stats.parquet")
    pd.testing.assert_frame_equal(
        sharded[["id", "state", "probe_state", "cluster"]], single[["id", "state", "probe_state", "cluster"]]
    )
    np.testing.assert_allclose(sharded["energy_in_object"], single["energy_in_object"], rtol=1e-4, atol=1e-5)
    # the fill is seeded by each image's id: the probes do not depend on the sharding
    np.testing.assert_allclose(sharded["background_reliance"], single["background_reliance"], rtol=1e-4, atol=1e-4)


def test_saliency_outputs_follow_the_contract(tiny_demo: Path) -> None:
    labels = pd.read_parquet(tiny_demo / "classes/labels.parquet")
    stats = pd.read_parquet(tiny_demo / "saliency/stats.parquet")
    contract = ["id", "split", "label", "predicted", "correct", "energy_in_object", "pointing_hit", "rank_accuracy",
                "peak_offset", "entropy", "background_focused", "prob_object_only", "prob_background_only",
                "background_reliance", "background_reliant", "probe_state", "cluster"]  # fmt: skip
    assert set(contract) <= set(stats.columns)
    for name in ("low", "high"):
        assert {f"energy_in_object_{name}", f"relative_energy_{name}", f"state_{name}"} <= set(stats.columns)
        assert {f"margin_{name}", f"margin_object_only_{name}", f"margin_background_only_{name}"} <= set(stats.columns)
    probed = stats["probe_state"] == "ok"
    assert set(stats["probe_state"]) <= {"ok", "empty_object", "no_background", "no_margin"} and probed.mean() > 0.5
    assert stats.loc[probed, "background_reliance"].between(0, 1).all()
    assert stats.loc[~probed, "background_reliance"].isna().all()
    assert stats["background_reliant"].tolist() == (probed & (stats["background_reliance"] >= 0.5)).tolist()
    # the probes' unchanged view is the audit's own prediction: its margin is positive for the predicted class
    predicted_margin = np.choose(stats["predicted"].cat.codes, [stats["margin_low"], stats["margin_high"]])
    assert (predicted_margin >= 0).all()
    problems = pd.read_csv(tiny_demo / "saliency/region_problems.csv")
    assert len(stats) + len(problems) == len(labels)
    assert set(stats["state"]) <= {"ok", "empty_map", "empty_object"}
    ok = stats["state"] == "ok"
    assert stats.loc[ok, "energy_in_object"].between(0, 1).all()
    assert stats["background_focused"].tolist() == (ok & (stats["relative_energy"] < 0.5)).tolist()
    assert (stats.loc[ok, "cluster"] >= 0).all() and (stats.loc[~ok, "cluster"] == -1).all()  # -1: not clustered
    assert stats["correct"].tolist() == (stats["label"].astype(str) == stats["predicted"].astype(str)).tolist()

    summary = pd.read_csv(tiny_demo / "saliency/summary.csv")
    assert {"all", "true class", "predicted class", "split", "prediction", "shortcut in true class"} == set(
        summary["group_by"]
    )
    overall = summary[summary["group_by"] == "all"].iloc[0]
    assert overall["n"] == len(stats) and overall["flagged"] == stats["background_focused"].sum()
    backgrounds = pd.read_csv(tiny_demo / "saliency/backgrounds.csv")
    overall = backgrounds[(backgrounds["split"] == "all") & (backgrounds["class"] != "all")].set_index("class")
    assert overall["n"].sum() == probed.sum()
    correct = stats[probed].groupby("label", observed=True)["correct"].mean()
    np.testing.assert_allclose(overall.loc[correct.index, "acc_original"], correct)
    benchmark = json.loads((tiny_demo / "saliency/benchmark.json").read_text(), parse_constant=strict_json)
    twins = pd.read_parquet(tiny_demo / "saliency/twins.parquet")
    assert set(twins["id"]) == set(labels["id"])
    reliance = benchmark["reliance"]["classes"]
    assert sum(scores["n"] for scores in reliance.values()) == len(stats)
    assert benchmark["truth_column"] == "shortcut"
    high = benchmark["classes"]["high"]
    assert 0 <= high["auroc_energy_in_object"] <= 1 and high["n_shortcut"] > 0 and high["n_clean"] > 0
    headline = json.loads((tiny_demo / "saliency/headline.json").read_text())["headlines"]
    assert any("of 'high' predictions lose at least 50% of their margin when the background is replaced" in line
               and "rest mainly on the background" in line for line in headline)  # fmt: skip
    assert any(line.startswith("Against the twins") for line in headline)

    clusters = pd.read_csv(tiny_demo / "saliency/clusters.csv")
    counts = stats["predicted"].value_counts()
    scored = stats.loc[stats["state"] == "ok", "predicted"].value_counts()  # the others are not clustered
    assert clusters.groupby("predicted")["n"].sum().to_dict() == scored[scored > 0].to_dict()
    assert set(clusters["contrast_measure"]) == {"background_reliant"}  # the probes ran
    alone = clusters.groupby("predicted")["cluster"].transform("size") == 1
    assert not clusters.loc[alone, "candidate_shortcut"].any() and clusters.loc[alone, "contrast"].isna().all()
    figures = {p.name for p in (tiny_demo / "saliency").rglob("*.png")}
    assert {"random.png", "top-losses.png", "energy_in_object.png", "backgrounds.png"} <= figures
    for k, name in enumerate(["low", "high"]):
        shown = counts[name] > 0  # one cluster figure and one gallery per class that was predicted
        assert (f"{k}-{name}.png" in figures) == shown and (f"background-{k}-{name}.png" in figures) == shown
    for figure in (tiny_demo / "saliency").rglob("*.png"):
        assert np.asarray(Image.open(figure).convert("L"), dtype=float).std() > 10, figure
    for figure in (tiny_demo / "saliency/galleries").glob("*.png"):  # each gallery's ids, in order, beside it
        shown = pd.read_csv(figure.with_suffix(".csv"), dtype={"id": str})
        assert shown["rank"].tolist() == list(range(1, len(shown) + 1)) and set(shown["id"]) <= set(stats["id"])
    background = pd.read_csv(tiny_demo / "saliency/galleries/background-1-high.csv", dtype={"id": str})
    assert background["correct"].all() and background["background_reliance"].is_monotonic_decreasing
    for row in clusters[clusters["candidate_shortcut"]].itertuples():
        assert (tiny_demo / f"saliency/galleries/cluster-{row.cluster}-1-high.png").exists()


def test_missing_masks_are_reported_and_skipped(tiny_demo: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(tiny_demo, results)
    labels = pd.read_parquet(results / "classes/labels.parquet")
    gone = labels["id"].iloc[:3].tolist()
    for obj_id in gone:
        (results / f"demo/masks/{obj_id}.png").unlink()
    done = run_workflow(TINY_DEMO, results, "--forcerun", "regions", str(results / "saliency/stats.parquet"))
    assert "rule train" not in done.stdout + done.stderr
    problems = pd.read_csv(results / "saliency/region_problems.csv", dtype={"id": str})
    assert problems["id"].tolist() == gone and set(problems["problem"]) == {"missing_mask"}
    stats = pd.read_parquet(results / "saliency/stats.parquet")
    assert len(stats) == len(labels) - 3 and not set(gone) & set(stats["id"])


@pytest.mark.parametrize(
    "region",
    [{"method": "threshold"}, {"method": "circle", "radius_column": "petroR90_r", "pixel_scale": 0.396}],
)
def test_other_region_methods_run_end_to_end(tiny_demo: Path, tmp_path: Path, region: dict) -> None:
    results = tmp_path / "results"
    shutil.copytree(tiny_demo, results)
    # a copied folder has no Snakemake metadata of its own, so the changed params must be forced
    config = {**TINY_DEMO, "saliency": {"object": region, "truth_column": "shortcut"}}
    done = run_workflow(config, results, "--forcerun", "regions", str(results / "saliency/stats.parquet"))
    assert "rule train" not in done.stdout + done.stderr and "rule saliency_stats" in done.stdout + done.stderr
    stats = pd.read_parquet(results / "saliency/stats.parquet")
    before = pd.read_parquet(tiny_demo / "saliency/stats.parquet")
    assert len(stats) == len(before)
    assert not np.allclose(stats["energy_in_object"].fillna(-1), before["energy_in_object"].fillna(-1))


def test_threshold_regions_match_the_true_demo_masks(tiny_demo: Path) -> None:
    """The automatic segmentation against the simulator's noiseless-model masks (IoU 0.68 on the full demo)."""
    labels = pd.read_parquet(tiny_demo / "classes/labels.parquet")
    images = np.load(tiny_demo / "images/images.npy")
    truth = np.stack(
        [center_crop_pad(load_image(tiny_demo / f"demo/masks/{i}.png", 10**6).any(axis=2), 48) for i in labels["id"]]
    )
    found = threshold_regions(images, 2.0)  # the schema's saliency.object.nsigma
    iou = (found & truth).sum(axis=(1, 2)) / np.maximum((found | truth).sum(axis=(1, 2)), 1)
    assert iou.mean() > 0.5, iou


def test_a_torchvision_network_from_imagenet_weights_then_audited_as_a_plain_state_dict(
    tiny_demo: Path, tmp_path: Path
) -> None:
    """model.arch torchvision:resnet18 (the ImageNet stem: 2 x 2 maps at 64 px): three epochs from a state_dict of
    1000 classes (its head skipped); then that model, saved as a plain torchvision state_dict, audited with
    model.checkpoint: no training, and the audit's outputs are the plain network's own."""
    torch.manual_seed(0)  # the starting weights, and so the training, are the same at every run
    plain = tvm.get_model("resnet18", weights=None, num_classes=1000)
    torch.save(plain.state_dict(), tmp_path / "imagenet-like.pth")
    config = {
        **TINY_DEMO,
        "catalog": str(tiny_demo / "demo/catalog.csv"),
        "images": str(tiny_demo / "demo/images/{id}.jpg"),
        "saliency": {"object": {"method": "masks", "masks": str(tiny_demo / "demo/masks/{id}.png")}},
        "target": DEMO_TARGET,
        "image": {"size": 64, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "model": {"arch": "torchvision:resnet18", "weights": str(tmp_path / "imagenet-like.pth")},
        "train": {"epochs": 3, "lr": 0.003, "batch_size": 4},  # BatchNorm's running statistics need steps
    }
    trained = tmp_path / "trained"
    run_workflow(config, trained, str(trained / "eval/metrics.json"), str(trained / "provenance/provenance.csv"))
    log = (trained / "logs/train.log").read_text()
    skipped = "2 skipped (not in the model or of another shape): ['head.bias', 'head.weight']"
    assert f"{len(plain.state_dict()) - 2} tensors loaded, {skipped}" in log
    model, meta = load_checkpoint(trained / "model/model.pt", torch.device("cpu"))
    assert meta["arch"] == "torchvision:resnet18" and model.target_layer == "body.layer4"
    assert meta["mean"] == config["image"]["mean"]
    provenance = pd.read_csv(trained / "provenance/provenance.csv").set_index("item")["value"]
    assert provenance["training started from"] == str(tmp_path / "imagenet-like.pth")

    # the trained network as a user would have it: a plain torchvision state_dict, under torchvision's names
    plain = tvm.get_model("resnet18", weights=None, num_classes=2).eval()
    own = model.state_dict()
    plain.load_state_dict({source: own[name] for source, name in model.source_keys.items()})
    torch.save(plain.state_dict(), tmp_path / "mine.pth")
    imported = tmp_path / "imported"
    model_config = {
        "arch": "torchvision:resnet18",
        "checkpoint": str(tmp_path / "mine.pth"),
        "classes": ["low", "high"],
    }
    done = run_workflow({**config, "model": model_config}, imported)
    out = done.stdout + done.stderr
    assert "rule import_model:" in out and "rule train:" not in out
    audit = pq.read_table(imported / "audit/part-0.parquet")
    metadata = read_audit_metadata(audit.schema)
    assert metadata["layer"] == "body.layer4" and metadata["map_shape"] == [2, 2] and metadata["n_features"] == 512
    labels = pd.read_parquet(imported / "classes/labels.parquet")
    pixels = open_packed(imported / "images/images.npy")[:]
    x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0 - torch.tensor(config["image"]["mean"]).view(
        1, 3, 1, 1)) / torch.tensor(config["image"]["std"]).view(1, 3, 1, 1)  # fmt: skip
    with torch.no_grad():
        expected = torch.softmax(plain(x), dim=1).numpy()
    stored = audit.to_pandas().set_index("id").loc[labels["id"].astype(str), ["prob_low", "prob_high"]]
    np.testing.assert_allclose(stored.to_numpy(), expected, rtol=1e-5, atol=1e-5)
    provenance = pd.read_csv(imported / "provenance/provenance.csv").set_index("item")["value"]
    assert provenance["model trained here"] == "no: imported by model.checkpoint"
    assert provenance["imported file SHA-256"] == hashlib.sha256((tmp_path / "mine.pth").read_bytes()).hexdigest()
    stats = pd.read_parquet(imported / "saliency/stats.parquet")
    assert len(stats) == len(labels) and stats["state"].eq("ok").any()
    assert (imported / "saliency/backgrounds.csv").exists() and any((imported / "saliency/galleries").iterdir())
