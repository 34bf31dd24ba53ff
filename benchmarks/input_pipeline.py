"""The input pipeline and training throughput, measured in one run.

    python benchmarks/input_pipeline.py

1. Batches of 256 random rows, as training draws them: decoding the JPEGs with PIL
   (centre crop, in a pool of threads like pack_images) against reading the packed
   uint8 array, each with and without the dihedral augmentation. Interleaved rounds,
   best round kept.
2. One training epoch (saliency_audit.model.training.fit, the rule's own code; on CUDA when torch sees a
   GPU) per architecture and image size on synthetic packed images: training
   images/s and the share of each step spent waiting for data.
"""

import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from synthetic import galaxies, write_catalog  # noqa: E402

from saliency_audit.config import with_defaults  # noqa: E402
from saliency_audit.data.image_io import center_crop_pad, load_image, open_packed, packed_writer, read_rows  # noqa: E402
from saliency_audit.data.packing import pack  # noqa: E402
from saliency_audit.model.batches import batch_rows, dihedral, to_tensor  # noqa: E402
from saliency_audit.model.checkpoint import describe_device, select_device  # noqa: E402
from saliency_audit.model.training import fit, train_settings  # noqa: E402

BATCH = 256
NORM = ([0.1] * 3, [0.2] * 3)
# each architecture trains at the peak learning rate a user runs it with (the default's 0.08 diverges a ResNet)
EXAMPLES = Path(__file__).resolve().parents[1] / "config" / "examples"
# the workflow's training defaults, as a run resolves them from the schema
TRAIN = with_defaults(
    {"train": {}}, yaml.safe_load((EXAMPLES.parents[1] / "workflow/schemas/config.schema.yaml").read_text())
)["train"]
LEARNING_RATES = {
    "simple_cnn": TRAIN["lr"],
    "resnet18": yaml.safe_load((EXAMPLES / "resnet18.yaml").read_text())["train"]["lr"],
}


def loaders(folder: Path, n: int) -> dict:
    """name -> function(rows) -> normalised batch tensor."""
    catalog = pd.read_csv(write_catalog(folder, n))
    paths = [str(folder / "images" / f"{i}.jpg") for i in catalog["id"]]
    pack(paths, 64, folder / "packed.npy", max_pixels=10**6, workers=2)
    packed = open_packed(folder / "packed.npy")
    pool = ThreadPoolExecutor(2)
    generator = torch.Generator().manual_seed(0)
    device = select_device("auto")

    def jpeg(rows: np.ndarray) -> torch.Tensor:
        batch = np.stack(list(pool.map(lambda r: center_crop_pad(load_image(paths[r], 10**6), 64), rows)))
        return to_tensor(batch, *NORM, device)

    def packed_rows(rows: np.ndarray) -> torch.Tensor:
        return to_tensor(read_rows(packed, rows), *NORM, device)

    return {
        "JPEG (PIL)": jpeg,
        "JPEG + augmentation": lambda rows: dihedral(jpeg(rows), generator),
        "packed": packed_rows,
        "packed + augmentation": lambda rows: dihedral(packed_rows(rows), generator),
    }


def loading_table(folder: Path, n: int = 8192, rounds: int = 3) -> dict[str, float]:
    methods = loaders(folder, n)
    generator = torch.Generator().manual_seed(1)
    best = dict.fromkeys(methods, 0.0)
    for _ in range(rounds):
        for name, load in methods.items():
            batches = list(batch_rows(np.arange(n), BATCH, shuffle=True, generator=generator))[:12]
            started = time.perf_counter()
            for rows in batches:
                load(rows)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            best[name] = max(best[name], BATCH * len(batches) / (time.perf_counter() - started))
    return best


def training_row(arch: str, size: int, n: int, folder: Path) -> dict[str, float]:
    images, table = galaxies(n, size, seed=2)
    with packed_writer(folder / f"train-{size}.npy", n, size, 3) as write:
        write(images)
    labels = pd.DataFrame(
        {
            "id": table["id"],
            "class": pd.Categorical(np.where(table["radius_px"] > 5, "large", "small"), ["small", "large"]),
            "split": np.where(np.arange(n) % 5 == 0, "valid", "train"),
        }
    )
    settings = train_settings({**TRAIN, "epochs": 1, "lr": LEARNING_RATES[arch], "batch_size": 128})
    _, history, _ = fit(open_packed(folder / f"train-{size}.npy"), labels, arch, 2, settings, select_device("auto"))
    epoch = history.iloc[0]
    train_images = int((labels["split"] == "train").sum())
    return {"images/s": train_images / epoch["train_seconds"], "wait": epoch["data_seconds"] / epoch["train_seconds"]}


def main() -> None:
    torch.set_num_threads(2)
    device = select_device("auto")
    print(f"{describe_device(device)}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads; "
          f"batches of {BATCH} random rows, 64 px\n")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        best = loading_table(folder)
        print(f"{'loader':<24} {'images/s':>9} {'vs JPEG':>8}")
        for name, rate in best.items():
            base = best["JPEG (PIL)"] if "augmentation" not in name else best["JPEG + augmentation"]
            print(f"{name:<24} {rate:>9.0f} {rate / base:>8.1f}")
        print(f"\n{'training (1 epoch)':<24} {'size':>5} {'images/s':>9} {'waiting for data':>17}")
        for arch, size, n in (("simple_cnn", 64, 8192), ("simple_cnn", 128, 4096), ("resnet18", 64, 4096),
                              ("resnet18", 128, 1024)):  # fmt: skip
            row = training_row(arch, size, n, folder)
            print(f"{arch:<24} {size:>5} {row['images/s']:>9.0f} {row['wait']:>17.1%}")


if __name__ == "__main__":
    main()
