"""The intervention probes against the audit and a plain forward pass, before and after the batched fills.

    python benchmarks/probes.py                    # 2048 synthetic 64 px cutouts, 3 rounds
    python benchmarks/probes.py --images 512 --rounds 2
    python benchmarks/probes.py --demo results --images 4000   # a demo run's images and true masks instead

Everything runs on the same N synthetic cutouts (a galaxy whose light fades past its true
elliptical region, a bright star off it in half of them, a correlated noisy sky), packed like
the workflow packs images, with their true regions as mask files (or on a demo run's images and
masks), and the demo CNN (``simple_cnn``, 2 classes, random weights, eval mode). Each step below
is one pass over all N images in batches of 256, timed in interleaved rounds, best round kept
(the machine's speed drifts; ratios within one round do not):

- forward: read the batch, normalise it, one forward pass;
- audit: ``run_audit``, the audit rule's own code (Grad-CAM of every class, Parquet rows, moments);
- probes: ``probe_table``, the probes rule's own code per batch: the audit's logits of the images
  (read from the audit step's table), their regions (read from the regions step's file), ``probe_images``
  (default fill ``sky``, control ``redraw``), one forward of each of the 3 changed views, margins;
  *before* with the frozen image-by-image ``probe_images`` (the reference in
  tests/test_interventions.py), *after* with the batched one;
- regions: ``write_regions``, the regions rule's own code (from the true mask files), once for the
  probes and the statistics, which read them;
- saliency_stats: ``write_saliency_table``, the statistics rule's own code (the audit table, the
  regions, the probes' table);
- its parts: ``probe_images`` alone (before and after), the forward of the 3 views
  alone, as the rule runs it (3 batches of 256) and as one batch of 3 x 256.

Prints images/s and the ratios of probes, regions and statistics to audit and to forward (time per
image). The issue's targets: probes <= 2 x the audit rule's time, saliency_stats <= 1 x.
"""

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # the rules' progress bars would interleave with the table

import numpy as np
import pandas as pd
import torch
from PIL import Image
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

import saliency_audit.saliency.probes as probes_rule  # noqa: E402
from saliency_audit.audit.audit_pass import run_audit  # noqa: E402
from saliency_audit.audit.tables import audit_dataset, read_logits  # noqa: E402
from saliency_audit.data.image_io import open_packed, packed_writer, read_rows  # noqa: E402
from saliency_audit.data.packing import PackedIndex  # noqa: E402
from saliency_audit.data.region_store import RegionStore, write_regions  # noqa: E402
from saliency_audit.model.batches import to_tensor  # noqa: E402
from saliency_audit.model.factory import build_model  # noqa: E402
from saliency_audit.saliency.interventions import probe_images  # noqa: E402
from saliency_audit.saliency.stats import write_saliency_table  # noqa: E402
from test_interventions import reference_probe_images  # noqa: E402

BATCH = 256
SIZE = 64
RADIUS = 8.0  # saliency.probes.dilation 1 x the 8 px cell of simple_cnn's default layer


def cutouts(n: int, size: int = SIZE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` demo-like uint8 cutouts (N x size x size x 3) and their true regions (N x size x size)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    images, masks = np.empty((n, size, size, 3), np.uint8), np.empty((n, size, size), bool)
    for start in range(0, n, 512):
        part = slice(start, min(start + 512, n))
        m = part.stop - part.start
        cy, cx = [(size - 1) / 2 + rng.normal(0, 1, m)[:, None, None] for _ in range(2)]
        radius, ratio = rng.uniform(2.5, 7.0, (m, 1, 1)), rng.uniform(0.45, 1.0, (m, 1, 1))
        angle = rng.uniform(0, np.pi, (m, 1, 1))
        u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        v = (-(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)) / ratio
        ellipse = np.hypot(u, v) / radius
        light = rng.uniform(120, 220, (m, 1, 1)) * np.exp(-1.7 * ellipse)
        colour = rng.uniform(0.7, 1.2, (m, 1, 1, 3))
        # a bright star 10 to 22 px from the centre in half of the cutouts
        far, turn = rng.uniform(10, 22, (m, 1, 1)), rng.uniform(0, 2 * np.pi, (m, 1, 1))
        star = np.exp(-(np.hypot(yy - cy - far * np.sin(turn), xx - cx - far * np.cos(turn)) ** 2) / 2.5)
        star *= rng.uniform(150, 300, (m, 1, 1)) * (rng.random((m, 1, 1)) < 0.5)
        noise = ndimage.gaussian_filter(rng.normal(0, 1, (m, size, size, 3)), (0, 0.8, 0.8, 0)) * 2.2
        sky = rng.uniform(15, 40, (m, 1, 1, 3)) + rng.uniform(3, 7, (m, 1, 1, 1)) * noise
        pixels = sky + light[..., None] * colour + star[..., None]
        images[part] = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
        masks[part] = ellipse < 1.5
    return images, masks


def best_seconds(steps: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Each step's fastest wall time over ``rounds`` interleaved rounds, after one warm-up call each."""
    for step in steps.values():
        step()
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(rounds):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The rules' own log lines (audited n images ...) go to stderr; not into the table."""
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def synthetic_data(folder: Path, n: int) -> tuple[np.ndarray, list[str], str]:
    """``n`` cutouts packed under ``folder`` and their true regions as mask files, as the demo has them:
    the packed array, the ids (row i is ids[i]) and the mask path pattern."""
    images, masks = cutouts(n)
    ids = [f"s{i:07d}" for i in range(n)]
    with packed_writer(folder / "images.npy", n, SIZE, 3) as write:
        write(images)
    (folder / "masks").mkdir()
    for image_id, mask in zip(ids, masks):
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "masks" / f"{image_id}.png")
    return open_packed(folder / "images.npy"), ids, str(folder / "masks" / "{id}.png")


def demo_data(folder: Path, n: int) -> tuple[np.ndarray, list[str], str]:
    """A demo run's packed images (the first ``n``) and its true masks: images/images.npy,
    images/index.parquet and demo/masks/<id>.png under the results ``folder``."""
    index = pd.read_parquet(folder / "images" / "index.parquet").sort_values("row").iloc[:n]
    assert (index["row"].to_numpy() == np.arange(len(index))).all(), "the packed rows are the index's"
    return (
        open_packed(folder / "images" / "images.npy"),
        index["id"].astype(str).tolist(),
        str(folder / "demo" / "masks" / "{id}.png"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2048, help="images (the first ones of --demo)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--demo", type=Path, help="a demo run's results folder: its images and true masks instead")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    device = torch.device("cpu")
    torch.manual_seed(0)
    model = build_model("simple_cnn", 2).eval()
    meta = {"classes": ["low", "high"], "mean": [0.15] * 3, "std": [0.2] * 3, "target_layer": model.target_layer}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        packed, ids, pattern = demo_data(args.demo, args.images) if args.demo else synthetic_data(folder, args.images)
        n = len(ids)
        labels = pd.DataFrame({"id": ids, "split": "train",
                               "class": pd.Categorical.from_codes(np.arange(n) % 2, ["low", "high"])})  # fmt: skip
        catalog = pd.DataFrame({"image_width": SIZE, "image_height": SIZE}, index=pd.Index(ids, name="id"))
        batches = [np.arange(start, min(start + BATCH, n)) for start in range(0, n, BATCH)]
        region = {"method": "masks", "masks": pattern}
        settings = {"fill": "sky", "dilation": 1.0, "control": "redraw", "seed": 0, "layer": "auto"}
        with quiet():  # the regions rule's output, which the probes and the statistics read
            write_regions(packed, ids, catalog, region, 25_000_000, folder / "regions.npy").to_csv(
                folder / "problems.csv", index=False
            )
        store = RegionStore.open([folder / "regions.npy"], [folder / "problems.csv"], n)
        parts = []
        for rows in batches:
            masks, neighbours, _ = store.read(rows, [ids[i] for i in rows])
            parts.append((read_rows(packed, rows), masks, np.ones_like(masks), [ids[i] for i in rows]))
        views = [np.concatenate([pixels] * 3) for pixels, _, _, _ in parts]
        index = PackedIndex.from_ids(ids)
        probe_rows: list[pd.DataFrame] = []

        def forward() -> None:
            for rows in batches:
                with torch.inference_mode():
                    model(to_tensor(read_rows(packed, rows), meta["mean"], meta["std"], device))

        def audit() -> None:
            with quiet():
                run_audit(model, meta, packed, labels, model.target_layer, BATCH, device, folder / "audit.parquet", {})

        def probes(implementation: Callable) -> Callable[[], None]:
            def run() -> None:
                original, probes_rule.probe_images = probes_rule.probe_images, implementation
                try:
                    logits = read_logits(folder / "audit.parquet", ids, meta["classes"])
                    probe_rows[:] = [probes_rule.probe_table(model, meta, packed, labels, logits, store, catalog,
                                                             settings, device, BATCH)]  # fmt: skip
                finally:
                    probes_rule.probe_images = original

            return run

        def regions() -> None:
            with quiet():
                write_regions(packed, ids, catalog, region, 25_000_000, folder / "regions-timed.npy")

        def saliency_stats() -> None:
            table = probe_rows[0]
            with quiet():
                write_saliency_table(audit_dataset([folder / "audit.parquet"]), store, index, region,
                                     table.set_index(table["id"].astype(str)).drop(columns="id"), (0.5, 0.5),
                                     folder / "localisation.parquet")  # fmt: skip

        def fills(implementation: Callable) -> Callable[[], None]:
            return lambda: [implementation(*part, "sky", RADIUS, 0, "redraw") for part in parts]

        def three_views(split: int) -> Callable[[], None]:
            def run() -> None:
                for shown in views:
                    for chunk in np.array_split(shown, split):
                        with torch.inference_mode():
                            model(to_tensor(chunk, meta["mean"], meta["std"], device))

            return run

        steps = {
            "forward": forward,
            "audit (run_audit)": audit,
            "regions (write_regions)": regions,
            "probes before (probe_table)": probes(reference_probe_images),
            "probes after (probe_table)": probes(probe_images),
            "saliency_stats": saliency_stats,
            "  probe_images before": fills(reference_probe_images),
            "  probe_images after": fills(probe_images),
            "  3 views, 3 forwards (the rule)": three_views(3),
            "  3 views, one forward": three_views(1),
        }
        source = f"the first {n} images of {args.demo}" if args.demo else f"{n} synthetic {SIZE} px cutouts"
        print(f"{source}, batches of {BATCH}, simple_cnn, CPU {torch.get_num_threads()} threads, "
              f"{args.rounds} interleaved rounds, best kept\n")  # fmt: skip
        seconds = best_seconds(steps, args.rounds)
    print(f"{'step':<32} {'images/s':>9} {'ms/image':>9}")
    for name, took in seconds.items():
        print(f"{name:<32} {n / took:>9.0f} {1e3 * took / n:>9.3f}")
    print()
    for when in ("before", "after"):
        took = seconds[f"probes {when} (probe_table)"]
        print(f"probes {when}: probes / audit {took / seconds['audit (run_audit)']:.2f}, "
              f"probes / forward {took / seconds['forward']:.2f} (time per image)")  # fmt: skip
    speed_up = seconds["  probe_images before"] / seconds["  probe_images after"]
    print(f"probe_images alone: {speed_up:.1f}x faster")
    audit_seconds = seconds["audit (run_audit)"]
    for name in ("regions (write_regions)", "saliency_stats"):
        print(f"{name} / audit {seconds[name] / audit_seconds:.2f}")
    met = seconds["probes after (probe_table)"] <= 2 * audit_seconds
    print(f"target probes <= 2 x audit: {'met' if met else 'not met'}")
    met = seconds["saliency_stats"] <= audit_seconds
    print(f"target saliency_stats <= 1 x audit: {'met' if met else 'not met'}")


if __name__ == "__main__":
    main()
