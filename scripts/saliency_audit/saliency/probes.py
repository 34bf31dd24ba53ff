"""probes: every image with an object region shown to the model as it is, object only and background only.

Scattered like the audit: shard ``i`` reads ``images/part-<i>.npy`` once, a batch
at a time, and writes ``probes/part-<i>.parquet`` with, per image, the margins of
every class under the three views, the predicted class's probability under the
two probes, and ``background_reliance``. One forward of 3 x batch images per
batch, on the audit's device. Images without a usable region are left out here,
as in the saliency statistics (which list them).
"""

import os
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from saliency_audit.audit.map_geometry import derive_geometry
from saliency_audit.data.image_io import image_area, read_rows
from saliency_audit.data.regions import image_sizes, object_regions
from saliency_audit.model.batches import batch_rows, to_tensor
from saliency_audit.model.factory import Classifier, find_module
from saliency_audit.saliency.interventions import background_reliance, margins, probe_images
from saliency_audit.saliency.vocabulary import STATE_NO_MARGIN, STATE_OK, VIEWS


def probe_table(
    model: Classifier,
    meta: dict[str, Any],
    images: np.ndarray,
    labels: pd.DataFrame,
    catalog: pd.DataFrame,
    settings: dict[str, Any],
    device: torch.device,
    batch_size: int,
) -> pd.DataFrame:
    """Probe ``images`` (row ``i`` is ``labels.iloc[i]``); one row per image with a region."""
    classes, size = meta["classes"], images.shape[1]
    layer = meta["target_layer"] if settings["layer"] == "auto" else settings["layer"]
    geometry = derive_geometry(model, find_module(model, layer), size)
    radius = settings["dilation"] * max(geometry.stride)
    model.eval()
    frames = []
    progress = tqdm(total=len(labels), desc="probes", unit="img", mininterval=2.0)
    for batch in batch_rows(np.arange(len(labels)), batch_size, shuffle=False, generator=None):
        ids = labels["id"].iloc[batch].astype(str).tolist()
        pixels = read_rows(images, batch)
        sizes = image_sizes(catalog, ids)
        masks, bad = object_regions(settings["region"], ids, pixels, catalog, sizes, settings["max_pixels"])
        usable = np.ones(len(ids), dtype=bool)
        usable[[position for position, _, _ in bad]] = False
        progress.update(len(batch))
        if not usable.any():
            continue
        keep = np.flatnonzero(usable)
        ids = [ids[k] for k in keep]
        areas = np.stack([image_area(h, w, size) for w, h in (sizes[k] for k in keep)])
        object_only, background_only, state = probe_images(
            pixels[keep], masks[keep], areas, ids, settings["fill"], radius, settings["seed"]
        )
        views = np.concatenate([pixels[keep], object_only, background_only])
        with torch.inference_mode():
            logits = model(to_tensor(views, meta["mean"], meta["std"], device)).float().cpu().numpy()
        n = len(ids)
        frame: dict[str, Any] = {"id": ids}
        predicted = logits[:n].argmax(axis=1)
        pick = np.arange(n), predicted
        probed = state == STATE_OK  # the others were not changed: their probes say nothing
        view_margins = [margins(part) for part in np.split(logits, 3)]
        for view, part, margin in zip(VIEWS, np.split(logits, 3), view_margins):
            for k, name in enumerate(classes):
                frame[f"margin{view}_{name}"] = np.where(probed | (view == ""), margin[:, k], np.nan).astype(np.float32)
            if view:
                probs = torch.softmax(torch.from_numpy(part), dim=1).numpy()[pick]
                frame[f"prob{view}"] = np.where(probed, probs, np.nan).astype(np.float32)
        reliance = background_reliance(view_margins[0][pick], view_margins[1][pick])
        state = np.where(probed & np.isnan(reliance), STATE_NO_MARGIN, state)
        frame["background_reliance"] = np.where(state == STATE_OK, reliance, np.nan).astype(np.float32)
        frame["probe_state"] = state
        frames.append(pd.DataFrame(frame))
    progress.close()
    columns = ["id", *(f"margin{v}_{c}" for v in VIEWS for c in classes), "prob_object_only",
               "prob_background_only", "background_reliance", "probe_state"]  # fmt: skip
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def read_catalog(path: str | os.PathLike) -> pd.DataFrame:
    """The clean catalog indexed by id, where the object regions find each image's row."""
    return pd.read_parquet(path).set_index("id")


def describe_probes(table: pd.DataFrame, shard: pd.DataFrame, index: int) -> str:
    """The log line: how many of the shard's images were probed, by probe state."""
    counts = table["probe_state"].value_counts().to_dict()
    return f"probed {len(table)} of {len(shard)} images in shard {index}: {counts}"
