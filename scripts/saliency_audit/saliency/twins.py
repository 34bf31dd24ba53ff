"""score_twins: the demo benchmark's truth, from each galaxy's twin (the same stamp without off-object sources).

The simulator renders every galaxy twice: as observed, and as its twin with the
same galaxy, PSF and noise but no planted star, no neighbour and no field star.
The share of the predicted class's margin that the twin loses is the share the
off-object sources carry: the truth that ``background_reliance`` estimates
without a twin.
"""

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from saliency_audit.data.image_io import center_crop_pad, load_image, open_packed, read_rows
from saliency_audit.data.packing import PackedIndex
from saliency_audit.model.batches import batch_rows, to_tensor
from saliency_audit.model.job import load_model
from saliency_audit.saliency.interventions import background_reliance, margins


def twin_table(
    model: torch.nn.Module, meta: dict[str, Any], images: np.ndarray, index: PackedIndex, twins: str,
    device: torch.device, batch_size: int, max_pixels: int,
) -> pd.DataFrame:  # fmt: skip
    """Per image: the predicted class's margin on the image and on its twin, and the share lost."""
    size = images.shape[1]
    ids = index.ids.to_numpy()
    rows = index.rows(ids)
    model.eval()
    parts = []
    for batch in tqdm(list(batch_rows(np.arange(len(ids)), batch_size, shuffle=False, generator=None)),
                      desc="twins", unit="batch", mininterval=2.0):  # fmt: skip
        twin = np.stack([center_crop_pad(load_image(twins.format(id=i), max_pixels), size) for i in ids[batch]])
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


def score_twins(
    model_path: str | os.PathLike, images_path: str | os.PathLike, index_path: str | os.PathLike,
    twins_dir: str | os.PathLike, device_name: str, batch_size: int, max_pixels: int, threads: int,
) -> pd.DataFrame:  # fmt: skip
    """``twin_table`` of the packed images against the twins in ``twins_dir`` (``<id>.jpg``), on the job's device."""
    model, meta, device = load_model(model_path, device_name, threads)
    return twin_table(
        model, meta, open_packed(images_path), PackedIndex.read(index_path),
        str(Path(twins_dir) / "{id}.jpg"), device, batch_size, max_pixels,
    )  # fmt: skip


def describe_twins(table: pd.DataFrame) -> str:
    """The log line: how many twins were scored and how many lose more than half their margin."""
    share = table["off_object_share"]
    return f"{len(table)} twins scored; off-object share > 0.5 for {(share > 0.5).sum()}"
