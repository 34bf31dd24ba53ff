"""The intervention probes on a real telescope image: stars of M13, with and without a planted artefact.

    python benchmarks/real_probes.py [--keep DIR] [--out numbers.json]

M13 is the globular cluster that astropy ships as test data (300 x 300 integers):
a crowded field of stars a few pixels wide. Nothing is downloaded. Every star
(a local maximum of the smoothed image above a robust sky threshold, at least
6 px from a brighter one and half a stamp from the border) gets a 32 px stamp
centred on it, cut from one asinh stretch of the whole image (one scale for all
stamps, grey as RGB, PNG). Its class is its brightness: the log of its peak
above the sky, binned at the median into ``faint`` and ``bright``. Neighbouring
stamps overlap and hold other stars: the real condition of a crowded field.

Two runs of the real workflow (object regions of ``--method``, threshold by
default; the probes' ``--control``; 32 px, simple_cnn, fixed training settings):

- *planted*: half of the ``bright`` stamps (seeded) get an artefact off the
  object, a saturated disk of radius 2 px at least 10 px from the star and off
  the other bright stars where the stamp leaves room; the catalog's ``planted``
  column is the truth column. Each planted stamp's counterfactual is the same
  stamp without the artefact.
- *clean*: the same stamps, no artefact.

The truth of the planted run comes from its own model: the share of the predicted
class's margin (its logit minus the best other logit) that a planted stamp loses
when the artefact is removed (its counterfactual), scored exactly as the workflow
scores images; a prediction truly rests on the artefact when that share is above
0.5. Unplanted stamps have truth 0. Against it, the script prints the recall and
precision of ``background_reliant`` (the probes) and ``background_focused``
(Grad-CAM) over every image with a probe verdict, the flag rates per predicted
class in both runs, and the accuracy.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from astropy.io import fits
from PIL import Image
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from saliency_audit.audit.map_geometry import derive_geometry  # noqa: E402
from saliency_audit.data.image_io import center_crop_pad, load_image  # noqa: E402
from saliency_audit.data.regions import object_regions  # noqa: E402
from saliency_audit.model.batches import to_tensor  # noqa: E402
from saliency_audit.model.checkpoint import load_checkpoint  # noqa: E402
from saliency_audit.model.factory import find_module  # noqa: E402
from saliency_audit.model.metrics import binary_auc  # noqa: E402
from saliency_audit.saliency.interventions import background_reliance, margins, object_part  # noqa: E402

M13 = Path(fits.__file__).parent / "hdu/compressed/tests/data/m13.fits"
STAMP = 32  # stamp and image.size, px
SMOOTH = 1.0  # Gaussian sigma (px) of the image the stars are found in
DETECT_SIGMA = 5.0  # a star's smoothed peak is this many sky sigmas above the sky
MIN_SEPARATION = 6.0  # px between two stars (the fainter one is dropped)
STRETCH_PERCENTILES = (0.5, 99.9)  # of the asinh image, mapped to 0 and 255
ARTEFACT_RADIUS = 2.0  # px, the saturated disk
ARTEFACT_MIN_DISTANCE = 10.0  # px from the stamp's star
BRIGHT_LEVEL = 128  # stretched value above which a pixel belongs to a bright star the artefact avoids
TRUTH_SHARE = 0.5  # margin share lost without the artefact above which a prediction rests on it
SEED = 0
LABELS = ["faint", "bright"]
TRAIN = {"epochs": 15, "batch_size": 32, "lr": 0.02}  # the training of both runs
DILATION = 1.0  # the workflow's default saliency.probes.dilation, in map cells


def clipped_stats(values: np.ndarray, nsigma: float = 3.0, rounds: int = 10) -> tuple[float, float]:
    """Median and robust sigma (1.4826 MAD) of ``values`` after iterative ``nsigma`` clipping."""
    x = np.asarray(values, dtype=np.float64).ravel()
    for _ in range(rounds):
        median = np.median(x)
        sigma = 1.4826 * np.median(np.abs(x - median))
        x = x[np.abs(x - median) <= nsigma * sigma]
    return float(median), float(sigma)


def find_stars(data: np.ndarray) -> pd.DataFrame:
    """Local maxima of the smoothed image above the sky threshold, separated and away from the border."""
    smooth = ndimage.gaussian_filter(data, SMOOTH)
    sky, sigma = clipped_stats(smooth)
    size = 2 * int(np.ceil(MIN_SEPARATION / 2)) + 1
    peaks = (smooth == ndimage.maximum_filter(smooth, size=size)) & (smooth > sky + DETECT_SIGMA * sigma)
    half = STAMP // 2
    peaks[:half], peaks[-half:], peaks[:, :half], peaks[:, -half:] = False, False, False, False
    ys, xs = np.nonzero(peaks)
    order = np.argsort(-smooth[ys, xs], kind="stable")
    kept: list[int] = []
    for i in order:  # brightest first; a fainter peak closer than MIN_SEPARATION to a kept one is dropped
        if all((ys[i] - ys[j]) ** 2 + (xs[i] - xs[j]) ** 2 >= MIN_SEPARATION**2 for j in kept):
            kept.append(i)
    kept.sort(key=lambda i: (ys[i], xs[i]))
    y, x = ys[kept], xs[kept]
    peak = smooth[y, x] - sky
    return pd.DataFrame({"id": [f"star{k:04d}" for k in range(len(kept))], "x": x, "y": y,
                         "peak": peak, "target": np.log10(peak)})  # fmt: skip


def stretch(data: np.ndarray) -> np.ndarray:
    """One asinh stretch of the whole image to uint8 (the scale every stamp shares)."""
    sky, sigma = clipped_stats(data)
    values = np.arcsinh((data - sky) / sigma)
    lo, hi = np.percentile(values, STRETCH_PERCENTILES)
    return np.clip(np.round((values - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)


def disk(cy: int, cx: int) -> np.ndarray:
    yy, xx = np.mgrid[:STAMP, :STAMP]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= ARTEFACT_RADIUS**2


def artefact_place(stamp: np.ndarray, rng: np.random.Generator) -> tuple[int, int, bool]:
    """A disk centre inside the stamp, far enough from the star and, if possible, off bright stars."""
    centre = STAMP // 2
    r = int(np.ceil(ARTEFACT_RADIUS))
    yy, xx = np.mgrid[:STAMP, :STAMP]
    inside = (yy >= r) & (yy < STAMP - r) & (xx >= r) & (xx < STAMP - r)
    far = (yy - centre) ** 2 + (xx - centre) ** 2 >= ARTEFACT_MIN_DISTANCE**2
    bright = ndimage.distance_transform_edt(stamp < BRIGHT_LEVEL) <= ARTEFACT_RADIUS + 1
    free = inside & far & ~bright
    avoided = bool(free.any())
    cy, cx = np.nonzero(free if avoided else inside & far)
    k = rng.integers(len(cy))
    return int(cy[k]), int(cx[k]), avoided


def write_data(folder: Path) -> pd.DataFrame:
    """Stamps of every star (clean), the planted copies and their counterfactuals, and the catalog."""
    data = fits.getdata(M13).astype(np.float64)
    stars = find_stars(data)
    gray = stretch(data)
    median = float(stars["target"].median())
    stars["label"] = np.where(stars["target"] > median, "bright", "faint")
    rng = np.random.default_rng(SEED)
    bright = np.flatnonzero(stars["label"].to_numpy() == "bright")
    planted = np.zeros(len(stars), dtype=int)
    planted[rng.choice(bright, size=len(bright) // 2, replace=False)] = 1
    stars["planted"] = planted
    for name in ("clean", "planted", "counterfactual"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    half = STAMP // 2
    placed = []
    for row in stars.itertuples():
        stamp = gray[row.y - half : row.y + half, row.x - half : row.x + half]
        rgb = np.repeat(stamp[..., None], 3, axis=2)
        Image.fromarray(rgb).save(folder / "clean" / f"{row.id}.png")
        image = rgb.copy()
        if row.planted:
            cy, cx, avoided = artefact_place(stamp, rng)
            image[disk(cy, cx)] = 255
            Image.fromarray(rgb).save(folder / "counterfactual" / f"{row.id}.png")
            placed.append((cy, cx, avoided))
        else:
            placed.append((-1, -1, True))
        Image.fromarray(image).save(folder / "planted" / f"{row.id}.png")
    stars[["artefact_y", "artefact_x", "artefact_avoids_stars"]] = pd.DataFrame(placed, index=stars.index)
    stars.to_csv(folder / "catalog.csv", index=False)
    return stars


def run_workflow(folder: Path, name: str, stars: pd.DataFrame, settings: dict[str, str]) -> tuple[Path, float]:
    """One `snakemake --cores 2` run on the ``name`` images; its results folder and wall seconds."""
    lo, hi, median = float(stars["target"].min()), float(stars["target"].max()), float(stars["target"].median())
    results = folder / f"results-{name}"
    config = {
        "results": str(results),
        "catalog": str(folder / "catalog.csv"),
        "id_column": "id",
        "images": str(folder / name / "{id}.png"),
        "target": {"column": "target", "bins": [lo - 1.0, median, hi + 1.0], "labels": LABELS},
        "image": {"size": STAMP},
        "model": {"arch": "simple_cnn"},
        "train": TRAIN,
        "saliency": {"object": {"method": settings["method"]}, "probes": {"control": settings["control"]},
                     "truth_column": "planted" if name == "planted" else None, "gallery": {"n": 4}},
    }  # fmt: skip
    configfile = folder / f"config-{name}.yaml"
    configfile.write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    log = folder / f"snakemake-{name}.log"
    with log.open("w") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", str(configfile),
             "--replace-workflow-config", "--forceall"],
            cwd=REPO, stdout=handle, stderr=subprocess.STDOUT,
        )  # fmt: skip
    if done.returncode != 0:
        sys.exit(
            f"the {name} run failed ({done.returncode}); its log:\n" + "\n".join(log.read_text().splitlines()[-40:])
        )
    return results, time.perf_counter() - started


def load_stamps(paths: list[Path]) -> np.ndarray:
    """Images as the workflow packs them."""
    return np.stack([center_crop_pad(load_image(p, 25_000_000), STAMP) for p in paths])


def score_truth(results: Path, folder: Path, stars: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per planted stamp: the margin lost without the artefact, and whether the probe kept the artefact."""
    model, meta = load_checkpoint(results / "model/model.pt", "cpu")
    ids = stars.loc[stars["planted"] == 1, "id"].tolist()
    images = load_stamps([folder / "planted" / f"{i}.png" for i in ids])
    twins = load_stamps([folder / "counterfactual" / f"{i}.png" for i in ids])
    with torch.inference_mode():
        logits = model(to_tensor(np.concatenate([images, twins]), meta["mean"], meta["std"], torch.device("cpu")))
    image_logits, twin_logits = np.split(logits.float().numpy(), 2)
    predicted = image_logits.argmax(axis=1)
    pick = np.arange(len(ids)), predicted
    share = background_reliance(margins(image_logits)[pick], margins(twin_logits)[pick])
    probs = torch.softmax(torch.from_numpy(image_logits), dim=1).numpy()
    # the object-only probe keeps the object's part: its region grown by DILATION cells of the map,
    # less what is nearer to another source
    geometry = derive_geometry(model, find_module(model, meta["target_layer"]), STAMP)
    radius = DILATION * max(geometry.stride)
    regions, _ = object_regions({"method": "threshold", "nsigma": 2.0}, ids, images, None, None, 25_000_000)
    grown = np.stack([object_part(image, region, np.ones_like(region), radius)
                      for image, region in zip(images, regions)])  # fmt: skip
    planted = stars.set_index("id").loc[ids]
    artefacts = np.stack([disk(int(cy), int(cx)) for cy, cx in zip(planted["artefact_y"], planted["artefact_x"])])
    kept = (grown & artefacts).sum(axis=(1, 2)) / artefacts.sum(axis=(1, 2))
    table = pd.DataFrame({"id": ids, "predicted_here": np.asarray(meta["classes"])[predicted],
                          "prob_here": probs[pick], "truth_share": share,
                          "artefact_kept_by_probe": kept})  # fmt: skip
    info = {"classes": meta["classes"], "dilation_px": float(radius), "map_stride_px": list(geometry.stride)}
    return table, info


def share(values: pd.Series) -> float | None:
    return float(values.mean()) if len(values) else None


def rates(stats: pd.DataFrame, accuracy: dict[str, Any]) -> list[dict[str, Any]]:
    """Flag rates per predicted class (and over all images), the run's accuracy on the first row."""
    rows = []
    for name, group in [("all", stats), *((c, stats[stats["predicted"] == c]) for c in LABELS)]:
        rows.append(
            {
                "predicted": name,
                "n": len(group),
                "background_reliant": share(group["background_reliant"]),
                "background_focused": share(group["background_focused"]),
                "empty object region": share(group["state"] == "empty_object"),
            }
        )
    rows[0].update(accuracy)
    return rows


def recall_precision(flag: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    hits = int((flag & truth).sum())
    return {
        "flagged": int(flag.sum()),
        "hits": hits,
        "recall": hits / int(truth.sum()) if truth.any() else None,
        "precision": hits / int(flag.sum()) if flag.any() else None,
    }


def fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def markdown(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "| --- |" + " ---: |" * (len(columns) - 1)]
    lines += ["| " + " | ".join(fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def run_accuracy(results: Path) -> dict[str, Any]:
    metrics = json.loads((results / "eval/metrics.json").read_text())
    return {
        "valid_accuracy": float(metrics["accuracy"]),
        "train_accuracy": float(metrics["train_accuracy"]),
        "n_valid": int(metrics["n_valid"]),
    }


def counts(values: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in values.value_counts().items()}


def benchmark(folder: Path, settings: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    stars = write_data(folder)
    labels = stars["label"].value_counts()
    is_planted = stars["planted"] == 1
    out: dict[str, Any] = {
        "n_stars": len(stars),
        "n_faint": int(labels.get("faint", 0)),
        "n_bright": int(labels.get("bright", 0)),
        "n_planted": int(is_planted.sum()),
        "n_artefact_off_bright_stars": int(stars.loc[is_planted, "artefact_avoids_stars"].sum()),
        "train": TRAIN,
        "settings": settings,
        "runs": {},
    }
    print(
        f"{out['n_stars']} stars ({out['n_faint']} faint, {out['n_bright']} bright), {out['n_planted']} planted; "
        f"the artefact avoids bright stars in {out['n_artefact_off_bright_stars']}",
        flush=True,
    )
    stats = {}
    for name in ("planted", "clean"):
        results, wall = run_workflow(folder, name, stars, settings)
        print(f"{name} run: {wall:.0f} s", flush=True)
        table = pd.read_parquet(results / "saliency/stats.parquet")
        table["predicted"] = table["predicted"].astype(str)
        table["label"] = table["label"].astype(str)
        stats[name] = table
        out["runs"][name] = {
            "wall_s": wall,
            "accuracy": run_accuracy(results),
            "probe_states": counts(table["probe_state"]),
            "region_states": counts(table["state"]),
            "rates": [],
        }
        if name == "planted":
            truth, info = score_truth(results, folder, stars)
            out.update(info)
    planted = stats["planted"].merge(truth, on="id", how="left")
    scored = planted["prob_here"].notna().to_numpy()
    # the workflow's own probability of the predicted class against ours from the PNGs: same preprocessing
    probs = planted[[f"prob_{c}" for c in out["classes"]]].to_numpy()[scored].max(axis=1)
    out["max_prob_difference_vs_workflow"] = float(np.abs(probs - planted.loc[scored, "prob_here"]).max())
    out["predictions_agree_with_workflow"] = bool(
        (planted.loc[scored, "predicted"] == planted.loc[scored, "predicted_here"]).all()
    )
    out["truth_share_median_planted"] = float(np.nanmedian(planted.loc[scored, "truth_share"]))
    kept = planted.loc[scored, "artefact_kept_by_probe"]
    out["artefact_kept_by_probe"] = {"any": int((kept > 0).sum()), "all": int((kept >= 1).sum())}

    on = planted[(planted["probe_state"] == "ok").to_numpy()]  # images with a probe verdict
    truly = on["truth_share"].fillna(0.0).to_numpy() > TRUTH_SHARE  # unplanted images: truth 0
    planted_here = on["id"].isin(stars.loc[is_planted, "id"]).to_numpy()
    # an empty object region (no star found at the centre) leaves Grad-CAM without a verdict, while the
    # probes give one: the scores are given over every image with a probe verdict and over those with a region
    found = (on["state"] != "empty_object").to_numpy()
    out["n_with_verdict"] = len(on)
    out["n_planted_with_verdict"] = int(planted_here.sum())
    out["n_truly_reliant"] = int(truly.sum())
    out["n_with_verdict_and_region"] = int(found.sum())
    out["n_truly_reliant_with_region"] = int(truly[found].sum())
    out["scores"] = []
    for subset, mask in (("all with a probe verdict", np.ones(len(on), dtype=bool)), ("object region found", found)):
        for flag in ("background_reliant", "background_focused"):
            out["scores"].append(
                {
                    "flag": flag,
                    "images": subset,
                    "n": int(mask.sum()),
                    "truly reliant": int(truly[mask].sum()),
                    **recall_precision(on[flag].to_numpy(bool)[mask], truly[mask]),
                }
            )
    out["auroc_background_reliance"] = binary_auc(truly, on["background_reliance"].to_numpy())
    out["groups"] = []
    bright = (on["label"] == "bright").to_numpy()
    groups = (("planted", planted_here), ("unplanted bright", ~planted_here & bright), ("faint", ~bright))
    for name, mask in groups:
        part = on[mask]
        out["groups"].append(
            {
                "images (true class)": name,
                "n": len(part),
                "truly reliant": int(truly[mask].sum()),
                "background_reliance median": float(part["background_reliance"].median()) if len(part) else None,
                "background_reliant": share(part["background_reliant"]),
                "background_focused": share(part["background_focused"]),
                "empty object region": share(part["state"] == "empty_object"),
            }
        )
    for name in ("planted", "clean"):
        out["runs"][name]["rates"] = rates(stats[name], out["runs"][name]["accuracy"])
    out["wall_s"] = time.perf_counter() - started
    return out


def report(out: dict[str, Any]) -> str:
    rate_rows = [{"run": name, **row} for name in ("planted", "clean") for row in out["runs"][name]["rates"]]
    accuracy = [
        {"run": name, **out["runs"][name]["accuracy"], "wall s": out["runs"][name]["wall_s"]}
        for name in ("planted", "clean")
    ]
    kept = out["artefact_kept_by_probe"]
    summary = (
        f"{out['n_stars']} stars ({out['n_faint']} faint, {out['n_bright']} bright); {out['n_planted']} planted "
        f"({out['n_planted_with_verdict']} with a probe verdict), {out['n_truly_reliant']} of them truly reliant "
        f"(margin share lost without the artefact > {TRUTH_SHARE}; median share lost "
        f"{out['truth_share_median_planted']:.2f}). {out['n_with_verdict']} images with a probe verdict, "
        f"{out['n_with_verdict_and_region']} of them with a non-empty object region "
        f"({out['n_truly_reliant_with_region']} truly reliant). The object region is grown by "
        f"{out['dilation_px']:.0f} px before the probes: the object-only probe keeps part of the artefact in "
        f"{kept['any']} planted stamps, all of it in {kept['all']}. AUROC of background_reliance for the truth: "
        f"{fmt(out['auroc_background_reliance'])}."
    )
    columns = ["images (true class)", "n", "truly reliant", "background_reliance median", "background_reliant",
               "background_focused", "empty object region"]  # fmt: skip
    return "\n\n".join(
        [
            summary,
            markdown(out["scores"], ["flag", "images", "n", "truly reliant", "flagged", "hits", "recall", "precision"]),
            markdown(out["groups"], columns),
            markdown(
                rate_rows, ["run", "predicted", "n", "background_reliant", "background_focused", "empty object region"]
            ),  # fmt: skip
            markdown(accuracy, ["run", "valid_accuracy", "train_accuracy", "n_valid", "wall s"]),
            f"(planted run: recall and precision against the truth; flag rates: share of images. The workflow's "
            f"probabilities and ours differ by at most {out['max_prob_difference_vs_workflow']:.1e}; predictions "
            f"agree: {out['predictions_agree_with_workflow']}. Whole benchmark {out['wall_s']:.0f} s.)",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="keep the stamps and both run folders here")
    parser.add_argument("--out", type=Path, help="write the numbers as JSON here")
    parser.add_argument("--method", default="threshold", help="saliency.object.method (threshold, segments)")
    parser.add_argument("--control", default="redraw", help="saliency.probes.control (refill, redraw)")
    args = parser.parse_args()
    settings = {"method": args.method, "control": args.control}
    torch.set_num_threads(2)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        out = benchmark(args.keep.resolve(), settings)
    else:
        with tempfile.TemporaryDirectory(prefix="real-probes-") as tmp:
            out = benchmark(Path(tmp), settings)
    print(report(out))
    if args.out:
        args.out.write_text(json.dumps(out, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
