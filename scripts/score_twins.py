"""score_twins: the demo benchmark's truth, from each galaxy's twin (the same stamp without off-object sources).

The simulator renders every galaxy twice: as observed, and as its twin with the
same galaxy, PSF and noise but no planted star, no neighbour and no field star.
The share of the predicted class's margin that the twin loses is the share the
off-object sources carry: the truth that ``background_reliance`` estimates
without a twin.
"""

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from saliency_audit.data.image_io import center_crop_pad, load_rgb, open_packed, read_rows
from saliency_audit.model.batches import batch_rows, to_tensor
from saliency_audit.model.checkpoint import load_checkpoint, select_device
from saliency_audit.runtime.atomic_io import write_parquet
from saliency_audit.runtime.job import start_job
from saliency_audit.saliency.interventions import background_reliance, margins


def twin_table(
    model: torch.nn.Module, meta: dict[str, Any], images: np.ndarray, index: pd.DataFrame, twins: str,
    device: torch.device, batch_size: int, max_pixels: int,
) -> pd.DataFrame:  # fmt: skip
    """Per image: the predicted class's margin on the image and on its twin, and the share lost."""
    size = images.shape[1]
    ids = index["id"].astype(str).to_numpy()
    rows = index["row"].to_numpy()
    model.eval()
    parts = []
    for batch in tqdm(list(batch_rows(np.arange(len(ids)), batch_size, shuffle=False, generator=None)),
                      desc="twins", unit="batch", mininterval=2.0):  # fmt: skip
        twin = np.stack([center_crop_pad(load_rgb(twins.format(id=i), max_pixels), size) for i in ids[batch]])
        views = np.concatenate([read_rows(images, rows[batch]), twin])
        with torch.inference_mode():
            logits = model(to_tensor(views, meta["mean"], meta["std"], device)).float().cpu().numpy()
        image_logits, twin_logits = np.split(logits, 2)
        predicted = image_logits.argmax(axis=1)
        pick = np.arange(len(batch)), predicted
        margin, twin_margin = margins(image_logits)[pick], margins(twin_logits)[pick]
        parts.append(
            pd.DataFrame(
                {
                    "id": ids[batch],
                    "margin": margin.astype(np.float32),
                    "twin_margin": twin_margin.astype(np.float32),
                    "off_object_share": background_reliance(margin, twin_margin).astype(np.float32),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    torch.set_num_threads(snakemake.threads)
    params = snakemake.params
    device = select_device(params.device)
    model, meta = load_checkpoint(snakemake.input.model, device)
    table = twin_table(
        model, meta, open_packed(snakemake.input.images), pd.read_parquet(snakemake.input.index),
        str(Path(snakemake.input.twins) / "{id}.jpg"), device, params.batch_size, params.max_pixels,
    )  # fmt: skip
    write_parquet(table, snakemake.output.table)
    share = table["off_object_share"]
    print(f"{len(table)} twins scored; off-object share > 0.5 for {(share > 0.5).sum()}", file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
