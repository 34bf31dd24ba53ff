"""The audit tables' format: one Parquet row group per batch with id, split, label, predicted,
prob_<class>, logit_<class>, activation and cam_<class> list columns, and the run's facts in the schema
metadata.

Kept apart from the audit pass (no torch), so that the stages that only read the
tables start quickly.
"""

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from saliency_audit.data.classes import predicted_values, training_mean
from saliency_audit.model.evaluation import predictions_table

if TYPE_CHECKING:
    from saliency_audit.audit.map_geometry import MapGeometry

METADATA_KEY = b"saliency_audit"


def audit_dataset(parts: Sequence[str | os.PathLike]) -> ds.Dataset:
    """The audit parts as one dataset, read without pre-buffering whole row groups."""
    options = ds.ParquetFragmentScanOptions(pre_buffer=False)
    return ds.dataset([str(part) for part in parts], format=ds.ParquetFileFormat(default_fragment_scan_options=options))


def audit_batches(dataset: ds.Dataset, columns: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
    """Stream ``columns`` a batch at a time, reading at most two batches ahead.

    pyarrow's default read-ahead runs far ahead of a consumer as slow as the
    saliency stages, and its buffers made a stage's memory grow with the number
    of images.
    """
    return dataset.to_batches(columns=columns, batch_size=batch_size, batch_readahead=2, fragment_readahead=1)


def audit_schema(classes: list[str], metadata: dict[str, Any]) -> pa.Schema:
    """The columns of the output contract, with the run's facts in the key-value metadata."""
    fields = [
        pa.field("id", pa.string()),
        pa.field("split", pa.string()),
        pa.field("label", pa.string()),
        pa.field("predicted", pa.string()),
        *(pa.field(f"prob_{c}", pa.float32()) for c in classes),
        *(pa.field(f"logit_{c}", pa.float32()) for c in classes),
        pa.field("activation", pa.list_(pa.float32())),
        *(pa.field(f"cam_{c}", pa.list_(pa.float32())) for c in classes),
    ]
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(metadata).encode()})


def read_audit_metadata(schema: pa.Schema) -> dict[str, Any]:
    """Class order, map shape, layer and model checksum stored with the audit tables."""
    return json.loads(schema.metadata[METADATA_KEY])


@dataclass(frozen=True)
class AuditMeta:
    """The audit run's facts, read once from the tables' schema: what every reader of the maps needs."""

    classes: list[str]
    map_shape: tuple[int, int]
    facts: dict[str, Any]  # all of it: layer, model checksum, compiled, map geometry, ...

    @classmethod
    def read(cls, source: ds.Dataset | pa.Schema) -> "AuditMeta":
        facts = read_audit_metadata(source.schema if isinstance(source, ds.Dataset) else source)
        return cls(list(facts["classes"]), (int(facts["map_shape"][0]), int(facts["map_shape"][1])), facts)

    @property
    def geometry(self) -> "MapGeometry":
        """Where each map cell looks in the image (imported here: the tables' readers need no torch)."""
        from saliency_audit.audit.map_geometry import MapGeometry  # noqa: PLC0415

        return MapGeometry.from_dict(self.facts["map_geometry"])

    @property
    def compiled(self) -> bool:
        return bool(self.facts.get("compiled", False))


def _list_column(values: np.ndarray) -> pa.ListArray:
    """B x D float32 -> list<float32> without copying row by row."""
    rows, width = values.shape
    offsets = np.arange(0, rows * width + 1, width, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.ascontiguousarray(values, np.float32).reshape(-1)))


def batch_table(rows: pd.DataFrame, logits: np.ndarray, activations: np.ndarray, cams: np.ndarray,
                classes: list[str], schema: pa.Schema) -> pa.Table:  # fmt: skip
    """One row group from host arrays: logits B x C, activations B x F, cams B x C x h x w.

    The logits are kept beside the probabilities because a margin taken from float32
    probabilities loses its precision where the model is sure; the probes need exact margins."""
    logits = np.asarray(logits, dtype=np.float32)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    columns: dict[str, pa.Array] = {
        "id": pa.array(rows["id"].astype(str).to_numpy(), pa.string()),
        "split": pa.array(rows["split"].astype(str).to_numpy(), pa.string()),
        "label": pa.array(rows["class"].astype(str).to_numpy(), pa.string()),
        "predicted": pa.array(np.asarray(classes, dtype=object)[probs.argmax(axis=1)], pa.string()),
    }
    for k, name in enumerate(classes):
        columns[f"prob_{name}"] = pa.array(probs[:, k], pa.float32())
    for k, name in enumerate(classes):
        columns[f"logit_{name}"] = pa.array(logits[:, k], pa.float32())
    columns["activation"] = _list_column(activations)
    for k, name in enumerate(classes):
        columns[f"cam_{name}"] = _list_column(cams[:, k].reshape(len(cams), -1))
    return pa.Table.from_pydict(columns, schema=schema)


def read_list_column(table: pa.Table | pa.RecordBatch, name: str) -> np.ndarray:
    """A list<float32> column (activation, cam_<class>) as an N x D array, without per-row Python."""
    column = table.column(name)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1)


def read_cams(table: pa.Table | pa.RecordBatch, classes: list[str], map_shape: Sequence[int]) -> np.ndarray:
    """The Grad-CAM maps of every class as a B x C x h x w array."""
    return np.stack([read_list_column(table, f"cam_{c}").reshape(-1, *map_shape) for c in classes], axis=1)


def predicted_index(predicted: pd.Series | np.ndarray, classes: list[str]) -> np.ndarray:
    """Position of each predicted class in ``classes``."""
    return pd.Categorical(np.asarray(predicted, dtype=object), categories=classes).codes.astype(np.int64)


def read_predictions(
    parts: Sequence[str | os.PathLike], labels: pd.DataFrame, regression: bool = False
) -> tuple[pd.DataFrame, list[str]]:
    """The audit pass's prediction of every image in ``labels`` (in its order) as evaluate's table, and the
    class order: the one forward pass over the data, so no image is predicted twice. A ``regression``'s
    table also has each image's ``target`` and ``predicted_value`` (from its direction logits)."""
    dataset = audit_dataset(parts)
    classes = AuditMeta.read(dataset).classes
    columns = [f"prob_{c}" for c in classes]
    logits = [f"logit_{c}" for c in classes] if regression else []
    stored = dataset.to_table(columns=["id", *columns, *logits]).to_pandas().set_index("id")
    ids = labels["id"].astype(str)
    missing = ids[~ids.isin(stored.index)]
    if len(missing):
        raise ValueError(f"the audit tables lack {len(missing)} labelled images, e.g. {missing.iloc[0]!r}")
    probs = stored.loc[ids, columns].to_numpy(dtype=np.float32)
    table = predictions_table(labels, probs, classes)
    if regression:
        table["target"] = labels["target"].to_numpy(dtype=np.float64)
        table["predicted_value"] = predicted_values(stored.loc[ids, logits].to_numpy(), training_mean(labels))
    return table, classes


def read_logits(part: str | os.PathLike, ids: Sequence[str], classes: list[str]) -> np.ndarray:
    """The audit's logits of ``ids`` (in that order) as an N x C array in ``classes``' order: the images as
    they are, forwarded once by the audit, so that the probes forward only their changed views."""
    dataset = audit_dataset([part])
    stored_classes = AuditMeta.read(dataset).classes
    if stored_classes != list(classes):
        raise ValueError(f"{part} holds the classes {stored_classes}, the model {list(classes)}: audit it again")
    columns = [f"logit_{c}" for c in classes]
    if not set(columns) <= set(dataset.schema.names):
        raise ValueError(f"{part} has no logit columns (an audit table written before they were kept): run the "
                         "audit again (snakemake --forcerun audit ...)")  # fmt: skip
    stored = dataset.to_table(columns=["id", *columns]).to_pandas().set_index("id")
    wanted = pd.Index([str(i) for i in ids])
    missing = wanted[~wanted.isin(stored.index)]
    if len(missing):
        raise ValueError(f"{part} lacks {len(missing)} of the shard's images, e.g. {missing[0]!r}: audit it again")
    return stored.loc[wanted, columns].to_numpy(dtype=np.float32)
