"""probes: every image with an object region shown to the model as it is, object only, background only
and under the control (``interventions``).

Scattered like the audit: shard ``i`` reads ``images/part-<i>.npy`` once, a batch
at a time, and writes ``probes/part-<i>.parquet`` with, per image, the margins of
every class under the three views, the predicted class's probability under the
two probes, its margin under the control and the control's effect, and
``background_reliance`` net of that effect (``uncertain`` where the margin is
within it). The image as it is was forwarded by the audit: its logits come from the audit's
table of the shard, and the probes forward only the three changed views, each a batch of the
audit's size, on the audit's device.
Images without a usable region are left out here, as in the saliency statistics
(which list them).
"""

import os
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from saliency_audit.audit.map_geometry import derive_geometry
from saliency_audit.data.image_io import image_area, read_rows
from saliency_audit.data.region_store import RegionStore
from saliency_audit.data.regions import image_sizes
from saliency_audit.model.batches import batch_rows, to_tensor
from saliency_audit.model.factory import Classifier, find_module
from saliency_audit.saliency.interventions import (
    background_reliance,
    control_effect,
    margins,
    probe_images,
    uncertain,
)
from saliency_audit.saliency.vocabulary import STATE_NO_MARGIN, STATE_OK, STATE_UNCERTAIN, VIEWS


def probe_table(
    model: Classifier,
    meta: dict[str, Any],
    images: np.ndarray,
    labels: pd.DataFrame,
    logits: np.ndarray,
    regions: RegionStore,
    catalog: pd.DataFrame,
    settings: dict[str, Any],
    device: torch.device,
    batch_size: int,
) -> pd.DataFrame:
    """Probe ``images`` (row ``i`` is ``labels.iloc[i]``, whose audit logits are ``logits[i]`` and regions
    row ``i`` of ``regions``); one row per image with a region."""
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
        masks, neighbours, bad = regions.read(batch, ids)
        sizes = image_sizes(catalog, ids)
        usable = np.ones(len(ids), dtype=bool)
        usable[[position for position, _, _ in bad]] = False
        progress.update(len(batch))
        if not usable.any():
            continue
        keep = np.flatnonzero(usable)
        ids = [ids[k] for k in keep]
        areas = np.stack([image_area(h, w, size) for w, h in (sizes[k] for k in keep)])
        control = settings["control"]
        object_only, background_only, controls, state = probe_images(
            pixels[keep], masks[keep], areas, ids, settings["fill"], radius, settings["seed"], control, neighbours[keep]
        )
        with torch.inference_mode():  # one view at a time: a batch three times the audit's is slower on a CPU
            parts = [logits[batch[keep]]] + [
                model(to_tensor(view, meta["mean"], meta["std"], device)).float().cpu().numpy()
                for view in (object_only, background_only, controls)
            ]  # fmt: skip
        n = len(ids)
        frame: dict[str, Any] = {"id": ids}
        predicted = parts[0].argmax(axis=1)
        pick = np.arange(n), predicted
        probed = state == STATE_OK  # the others were not changed: their probes say nothing
        view_margins = [margins(part) for part in parts]
        for view, part, margin in zip(VIEWS, parts, view_margins):
            for k, name in enumerate(classes):
                frame[f"margin{view}_{name}"] = np.where(probed | (view == ""), margin[:, k], np.nan).astype(np.float32)
            if view:
                probs = torch.softmax(torch.from_numpy(part), dim=1).numpy()[pick]
                frame[f"prob{view}"] = np.where(probed, probs, np.nan).astype(np.float32)
        margin, margin_object_only, margin_control = (view_margins[v][pick] for v in (0, 1, 3))
        effect = control_effect(margin, margin_object_only, margin_control, control)
        reliance = background_reliance(margin, margin_object_only, effect)
        state = np.where(probed & np.isnan(reliance), STATE_NO_MARGIN, state)
        state = np.where((state == STATE_OK) & uncertain(margin, effect), STATE_UNCERTAIN, state)
        scored = np.isin(state, (STATE_OK, STATE_UNCERTAIN))
        frame["margin_control"] = np.where(probed, margin_control, np.nan).astype(np.float32)
        frame["control_effect"] = np.where(probed, effect, np.nan).astype(np.float32)
        frame["background_reliance"] = np.where(scored, reliance, np.nan).astype(np.float32)
        frame["probe_state"] = state
        frames.append(pd.DataFrame(frame))
    progress.close()
    columns = ["id", *(f"margin{v}_{c}" for v in VIEWS for c in classes), "prob_object_only",
               "prob_background_only", "margin_control", "control_effect", "background_reliance",
               "probe_state"]  # fmt: skip
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def read_catalog(path: str | os.PathLike) -> pd.DataFrame:
    """The clean catalog indexed by id, where the object regions find each image's row."""
    return pd.read_parquet(path).set_index("id")


def describe_probes(table: pd.DataFrame, shard: pd.DataFrame, index: int) -> str:
    """The log line: how many of the shard's images were probed, by probe state."""
    counts = table["probe_state"].value_counts().to_dict()
    return f"probed {len(table)} of {len(shard)} images in shard {index}: {counts}"
