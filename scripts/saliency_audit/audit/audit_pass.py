"""audit: one pass over every kept image that stores predictions, activations and all-class Grad-CAM.

Each batch becomes one Parquet row group as soon as it is computed, so memory
does not grow with the number of images. ``audit.shards`` splits the rows into
independent jobs: shard ``i`` reads the packed ``images/part-<i>.npy`` and writes
``audit/part-<i>.parquet``; later stages read all parts as one pyarrow dataset.
Each shard also writes the streamed moments of its activations, which the PCA
stage merges.
"""

import os
import sys
import time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from saliency_audit.audit.gradcam import GradCAM
from saliency_audit.audit.map_geometry import derive_geometry
from saliency_audit.audit.moments import Moments
from saliency_audit.audit.tables import audit_schema, batch_table
from saliency_audit.data.image_io import read_rows
from saliency_audit.model.batches import batch_rows, prefetch, to_tensor
from saliency_audit.model.factory import Classifier, find_module
from saliency_audit.runtime.atomic_io import atomic_path


def resolve_layer(meta: dict[str, Any], layer: str) -> str:
    """The layer to audit: the checkpoint's target layer for ``auto``, else the configured one."""
    return meta["target_layer"] if layer == "auto" else layer


def run_audit(
    model: Classifier,
    meta: dict[str, Any],
    images: np.ndarray,
    labels: pd.DataFrame,
    layer: str,
    batch_size: int,
    device: torch.device,
    out: str | os.PathLike,
    extra_metadata: dict[str, Any],
    compile: bool = False,
) -> Moments:
    """Audit ``images`` (row ``i`` is ``labels.iloc[i]``) into the Parquet file ``out``; return the
    moments of their activations. ``compile`` runs the body through ``torch.compile``."""
    classes = meta["classes"]
    moments: Moments | None = None
    writer: pq.ParquetWriter | None = None
    started = time.perf_counter()
    geometry = derive_geometry(model, find_module(model, layer), images.shape[1])
    with atomic_path(out) as tmp, GradCAM(model, layer, compile) as gradcam:
        try:
            progress = tqdm(total=len(labels), desc="audit", unit="img", mininterval=2.0)
            batches = list(batch_rows(np.arange(len(labels)), batch_size, shuffle=False, generator=None))

            def load(batch: np.ndarray) -> torch.Tensor:
                return to_tensor(read_rows(images, batch), meta["mean"], meta["std"], device)

            for batch, x in zip(batches, prefetch(load, batches)):
                result = gradcam(x)
                if writer is None:
                    metadata = {
                        "classes": classes,
                        "map_shape": list(result.cams.shape[-2:]),
                        "map_geometry": geometry.as_dict(),
                        "layer": layer,
                        "n_features": int(result.activations.shape[1]),
                        "compiled": compile,
                        **extra_metadata,
                    }
                    writer = pq.ParquetWriter(tmp, audit_schema(classes, metadata))
                    moments = Moments.empty(int(result.activations.shape[1]))
                # the batch's only copy to the host
                logits = result.logits.float().cpu().numpy()
                activations = result.activations.float().cpu().numpy()
                cams = result.cams.float().cpu().numpy()
                table = batch_table(labels.iloc[batch], logits, activations, cams, classes, writer.schema)
                writer.write_table(table, row_group_size=len(batch))
                assert moments is not None  # set with writer, on the first batch
                moments = moments.merge(Moments.of(activations))
                progress.update(len(batch))
            progress.close()
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise ValueError("this audit shard has no images; lower audit.shards")
    assert moments is not None  # set with writer, which exists here
    seconds = time.perf_counter() - started
    print(f"audited {len(labels)} images in {seconds:.1f} s ({len(labels) / seconds:.0f} images/s)", file=sys.stderr)
    return moments
