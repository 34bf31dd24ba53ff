"""Throughput of the audit pass against a plain forward pass, pytorch-grad-cam and Captum, of the
intervention probes (the fills and three views per image), and peak memory of the audit on 10k vs
100k images. Prints ratios measured in this one run.

    python benchmarks/audit_pass.py                 # CPU or CUDA, whichever torch picks
    python benchmarks/audit_pass.py --skip-memory   # throughput table only
    python benchmarks/audit_pass.py --skip-memory --batch-size 32 \
        --archs torchvision:resnet50@128 torchvision:convnext_tiny@128   # torchvision networks

All methods see the same model, the same batch and the same target layer, and
produce the maps of every class (one call per class for the libraries).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from captum.attr import LayerGradCam  # noqa: E402
from pytorch_grad_cam import GradCAM as LibraryGradCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from timing import images_per_second  # noqa: E402

from saliency_audit.audit.gradcam import GradCAM  # noqa: E402
from saliency_audit.audit.tables import audit_schema, batch_table  # noqa: E402
from saliency_audit.data.image_io import packed_writer  # noqa: E402
from saliency_audit.model.batches import to_tensor  # noqa: E402
from saliency_audit.model.factory import build_model, find_module  # noqa: E402
from saliency_audit.saliency.interventions import probe_images  # noqa: E402


def throughput(
    arch: str, n_classes: int, size: int, batch_size: int, device: torch.device, rounds: int = 5
) -> dict[str, float]:
    """Best images/s of each method over ``rounds`` interleaved rounds (robust to a busy machine)."""
    torch.manual_seed(0)
    model = build_model(arch, n_classes).to(device).eval()
    layer = find_module(model, model.target_layer)
    batch = torch.randn(batch_size, 3, size, size, device=device)
    classes = range(n_classes)
    captum = LayerGradCam(model, layer)

    def plain(x):
        with torch.inference_mode():
            return model(x)

    def ours(x):
        with GradCAM(model, model.target_layer) as gradcam:
            return gradcam(x)

    def library(x):
        # its hooks stay on the layer while it exists, so it lives only for its own calls
        with LibraryGradCAM(model=model, target_layers=[layer]) as cam:
            return [cam(input_tensor=x, targets=[ClassifierOutputTarget(c)] * len(x)) for c in classes]

    # the probes start from packed uint8 cutouts: a noisy sky with a centred object
    rng = np.random.default_rng(0)
    pixels = rng.normal(60, 10, (batch_size, size, size, 3)).clip(0, 255).astype(np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    disk = np.hypot(yy - (size - 1) / 2, xx - (size - 1) / 2) < size / 8
    pixels[:, disk] = 200
    masks = np.repeat(disk[None], batch_size, axis=0)
    areas = np.ones_like(masks)
    ids = [f"g{i}" for i in range(batch_size)]
    stats = ([0.2] * 3, [0.2] * 3)

    def probes(x):
        """What the probes rule does per batch: both fills, then one forward of the three views."""
        object_only, background_only, _, _ = probe_images(pixels, masks, areas, ids, "sky", 8.0, 0)
        views = to_tensor(np.concatenate([pixels, object_only, background_only]), *stats, device)
        with torch.inference_mode():
            return model(views)

    methods = {
        "forward": plain,
        "audit pass": ours,
        "probes": probes,
        "pytorch-grad-cam": library,
        "captum": lambda x: [captum.attribute(x, target=c, relu_attributions=True) for c in classes],
    }
    best = dict.fromkeys(methods, 0.0)
    for _ in range(rounds):
        for name, step in methods.items():
            best[name] = max(best[name], images_per_second(step, batch, device, seconds=1.0))
    return best


MEMORY_CHILD = """
import json, sys, numpy as np, pandas as pd, torch
sys.path.insert(0, {scripts!r})
from saliency_audit.audit.audit_pass import run_audit
from saliency_audit.data.image_io import open_packed
from saliency_audit.model.factory import build_model
n, packed, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
torch.set_num_threads(2)
torch.manual_seed(0)
model = build_model("simple_cnn", 2).eval()
labels = pd.DataFrame({{"id": [f"g{{i}}" for i in range(n)], "split": "train",
                       "class": pd.Categorical.from_codes(np.arange(n) % 2, ["low", "high"])}})
meta = {{"classes": ["low", "high"], "mean": [0.2] * 3, "std": [0.2] * 3}}
run_audit(model, meta, open_packed(packed), labels, "body.2", 256, torch.device("cpu"), out, {{}})
# VmHWM belongs to this process image (ru_maxrss would also count the parent's size at fork)
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({{"peak_rss_mb": peak_kb / 1024}}))
"""


def parquet_write_rate(n_features: int, map_side: int, n_classes: int, workdir: Path) -> tuple[float, float]:
    """Rows/s and MB/s of the audit's Parquet writer (batch_table + one row group per batch of 256)."""
    import pandas as pd
    import pyarrow.parquet as pq

    classes = [f"c{k}" for k in range(n_classes)]
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"id": [f"g{i}" for i in range(256)], "split": "train",
                         "class": pd.Categorical(rng.choice(classes, 256), classes)})  # fmt: skip
    logits = rng.normal(0, 3, (256, n_classes)).astype(np.float32)
    activations = rng.random((256, n_features), dtype=np.float32)
    cams = rng.random((256, n_classes, map_side, map_side), dtype=np.float32)
    schema = audit_schema(classes, {"classes": classes})
    out = workdir / "write.parquet"
    batches, started = 200, time.perf_counter()
    with pq.ParquetWriter(out, schema) as writer:
        for _ in range(batches):
            writer.write_table(batch_table(rows, logits, activations, cams, classes, schema), row_group_size=256)
    seconds = time.perf_counter() - started
    return 256 * batches / seconds, out.stat().st_size / 1e6 / seconds


def audit_peak_memory(n: int, workdir: Path) -> tuple[float, float]:
    """Peak RSS (MB) and wall time of run_audit over ``n`` synthetic 64 px images, in a fresh process."""
    packed = workdir / f"images-{n}.npy"
    rng = np.random.default_rng(0)
    with packed_writer(packed, n, 64, 3) as write:
        for start in range(0, n, 10_000):
            write(rng.integers(0, 255, (min(10_000, n - start), 64, 64, 3), dtype=np.uint8))
    script = MEMORY_CHILD.format(scripts=str(Path(__file__).resolve().parents[1] / "scripts"))
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", script, str(n), str(packed), str(workdir / f"audit-{n}.parquet")],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    packed.unlink()
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=256, help="default: audit.batch_size's default")
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--archs", nargs="+", default=["simple_cnn@64", "resnet18@64"],
                        help="model.arch@image size, e.g. torchvision:resnet50@128")  # fmt: skip
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; batch {args.batch_size}; {args.classes} classes; maps of every class\n")
    width = max(11, *(len(spec.split("@")[0]) for spec in args.archs))
    print(f"{'arch':<{width}} {'size':>4} {'forward':>9} {'audit':>9} {'grad-cam':>9} {'captum':>9} {'probes':>9}"
          f" {'audit/fwd':>9} {'audit/gc':>9} {'audit/cap':>9} {'a+p/fwd':>9}")  # fmt: skip
    for spec in args.archs:
        arch, size = spec.split("@")[0], int(spec.split("@")[1])
        r = throughput(arch, args.classes, size, args.batch_size, device)
        both = 1 / (1 / r["audit pass"] + 1 / r["probes"])  # audit and probes, one after the other
        print(
            f"{arch:<{width}} {size:>4} {r['forward']:>9.0f} {r['audit pass']:>9.0f} {r['pytorch-grad-cam']:>9.0f}"
            f" {r['captum']:>9.0f} {r['probes']:>9.0f} {r['audit pass'] / r['forward']:>9.2f}"
            f" {r['audit pass'] / r['pytorch-grad-cam']:>9.2f} {r['audit pass'] / r['captum']:>9.2f}"
            f" {both / r['forward']:>9.2f}"
        )
    print("(images/s; ratios are the audit pass over each other method, and audit + probes over forward)")
    with tempfile.TemporaryDirectory() as tmp:
        for arch, features, side in (("simple_cnn", 128, 8), ("resnet18", 512, 4)):
            rows, megabytes = parquet_write_rate(features, side, args.classes, Path(tmp))
            print(f"Parquet writer, {arch} tables ({features} features, {side}x{side} maps): "
                  f"{rows:.0f} rows/s, {megabytes:.0f} MB/s")  # fmt: skip
    if args.skip_memory:
        return
    print("\naudit rule memory (simple_cnn, 64 px, CPU):")
    with tempfile.TemporaryDirectory() as tmp:
        small = audit_peak_memory(10_000, Path(tmp))
        large = audit_peak_memory(100_000, Path(tmp))
    print(f"  10k images: peak RSS {small[0]:.0f} MB, {small[1]:.0f} s")
    print(f" 100k images: peak RSS {large[0]:.0f} MB, {large[1]:.0f} s")
    print(f" ratio 100k/10k: memory {large[0] / small[0]:.2f}, time {large[1] / small[1]:.1f}")


if __name__ == "__main__":
    main()
