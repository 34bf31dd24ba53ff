"""audit: one pass over every kept image that stores predictions, activations and all-class Grad-CAM.

Each batch becomes one Parquet row group as soon as it is computed, so memory
does not grow with the number of images. ``audit.shards`` splits the rows into
independent jobs: shard ``i`` reads the packed ``images/part-<i>.npy`` and writes
``audit/part-<i>.parquet``; later stages read all parts as one pyarrow dataset.
Each shard also writes the streamed moments of its activations, which the PCA
stage merges.
"""

import hashlib
import json
import os
import sys
import time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from atomic_io import atomic_path
from batches import batch_rows, read_rows, to_tensor
from checkpoint import load_checkpoint, select_device
from gradcam import GradCAM
from image_io import open_packed
from job import start_job
from models import Classifier
from moments import Moments
from shards import shard_rows

METADATA_KEY = b"saliency_audit"


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def audit_schema(classes: list[str], metadata: dict[str, Any]) -> pa.Schema:
    """The columns of the output contract, with the run's facts in the key-value metadata."""
    fields = [
        pa.field("id", pa.string()),
        pa.field("split", pa.string()),
        pa.field("label", pa.string()),
        pa.field("predicted", pa.string()),
        *(pa.field(f"prob_{c}", pa.float32()) for c in classes),
        pa.field("activation", pa.list_(pa.float32())),
        *(pa.field(f"cam_{c}", pa.list_(pa.float32())) for c in classes),
    ]
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(metadata).encode()})


def read_audit_metadata(schema: pa.Schema) -> dict[str, Any]:
    """Class order, map shape, layer and model checksum stored with the audit tables."""
    return json.loads(schema.metadata[METADATA_KEY])


def _list_column(values: np.ndarray) -> pa.ListArray:
    """B x D float32 -> list<float32> without copying row by row."""
    rows, width = values.shape
    offsets = np.arange(0, rows * width + 1, width, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.ascontiguousarray(values, np.float32).reshape(-1)))


def batch_table(rows: pd.DataFrame, probs: np.ndarray, activations: np.ndarray, cams: np.ndarray,
                classes: list[str], schema: pa.Schema) -> pa.Table:  # fmt: skip
    """One row group from host arrays: probs B x C, activations B x F, cams B x C x h x w."""
    columns: dict[str, pa.Array] = {
        "id": pa.array(rows["id"].astype(str).to_numpy(), pa.string()),
        "split": pa.array(rows["split"].astype(str).to_numpy(), pa.string()),
        "label": pa.array(rows["class"].astype(str).to_numpy(), pa.string()),
        "predicted": pa.array(np.asarray(classes, dtype=object)[probs.argmax(axis=1)], pa.string()),
    }
    for k, name in enumerate(classes):
        columns[f"prob_{name}"] = pa.array(probs[:, k], pa.float32())
    columns["activation"] = _list_column(activations)
    for k, name in enumerate(classes):
        columns[f"cam_{name}"] = _list_column(cams[:, k].reshape(len(cams), -1))
    return pa.Table.from_pydict(columns, schema=schema)


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
) -> Moments:
    """Audit ``images`` (row ``i`` is ``labels.iloc[i]``) into the Parquet file ``out``; return the
    moments of their activations."""
    classes = meta["classes"]
    moments: Moments | None = None
    writer: pq.ParquetWriter | None = None
    started = time.perf_counter()
    with atomic_path(out) as tmp, GradCAM(model, layer) as gradcam:
        try:
            progress = tqdm(total=len(labels), desc="audit", unit="img", mininterval=2.0)
            for batch in batch_rows(np.arange(len(labels)), batch_size, shuffle=False, generator=None):
                result = gradcam(to_tensor(read_rows(images, batch), meta["mean"], meta["std"], device))
                if writer is None:
                    metadata = {
                        "classes": classes,
                        "map_shape": list(result.cams.shape[-2:]),
                        "layer": layer,
                        "n_features": int(result.activations.shape[1]),
                        **extra_metadata,
                    }
                    writer = pq.ParquetWriter(tmp, audit_schema(classes, metadata))
                    moments = Moments.empty(int(result.activations.shape[1]))
                # the batch's only copy to the host
                probs = torch.softmax(result.logits.float(), dim=1).cpu().numpy()
                activations = result.activations.float().cpu().numpy()
                cams = result.cams.float().cpu().numpy()
                table = batch_table(labels.iloc[batch], probs, activations, cams, classes, writer.schema)
                writer.write_table(table, row_group_size=len(batch))
                moments = moments.merge(Moments.of(activations))
                progress.update(len(batch))
            progress.close()
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise ValueError("this audit shard has no images; lower audit.shards")
    seconds = time.perf_counter() - started
    print(f"audited {len(labels)} images in {seconds:.1f} s ({len(labels) / seconds:.0f} images/s)", file=sys.stderr)
    return moments


def read_list_column(table: pa.Table | pa.RecordBatch, name: str) -> np.ndarray:
    """A list<float32> column (activation, cam_<class>) as an N x D array, without per-row Python."""
    column = table.column(name)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1)


def read_cams(table: pa.Table | pa.RecordBatch, classes: list[str], map_shape: list[int]) -> np.ndarray:
    """The Grad-CAM maps of every class as a B x C x h x w array."""
    return np.stack([read_list_column(table, f"cam_{c}").reshape(-1, *map_shape) for c in classes], axis=1)


def predicted_index(predicted: pd.Series | np.ndarray, classes: list[str]) -> np.ndarray:
    """Position of each predicted class in ``classes``."""
    return pd.Categorical(np.asarray(predicted, dtype=object), categories=classes).codes.astype(np.int64)


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    torch.set_num_threads(snakemake.threads)
    params = snakemake.params
    device = select_device(params.device)
    model, meta = load_checkpoint(snakemake.input.model, device)
    labels = pd.read_parquet(snakemake.input.labels)
    rows = shard_rows(len(labels), params.shards, params.shard)
    images = open_packed(snakemake.input.images)
    if len(images) != len(rows):
        raise ValueError(
            f"{snakemake.input.images} holds {len(images)} images, but shard {params.shard} of {params.shards} "
            f"covers {len(rows)} rows of {snakemake.input.labels}; delete it so that it is packed again"
        )
    layer = meta["target_layer"] if params.layer == "auto" else params.layer
    moments = run_audit(
        model, meta, images, labels.iloc[rows].reset_index(drop=True), layer, params.batch_size, device,
        snakemake.output.part,
        {"model_sha256": file_sha256(snakemake.input.model), "shard": params.shard, "shards": params.shards},
    )  # fmt: skip
    moments.save(snakemake.output.moments)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
