"""The prologue of every job that runs a trained model (audit, probes, the demo's twins): torch's threads,
the device, the checkpoint, and for a sharded job its packed part and the label rows it holds."""

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from saliency_audit.data.image_io import open_packed
from saliency_audit.model.checkpoint import load_checkpoint, select_device
from saliency_audit.model.factory import Classifier
from saliency_audit.runtime.shards import shard_labels


def load_model(
    path: str | os.PathLike, device_name: str, threads: int
) -> tuple[Classifier, dict[str, Any], torch.device]:
    """The checkpoint's model and metadata on the configured device, with torch using the job's ``threads``."""
    torch.set_num_threads(threads)
    device = select_device(device_name)
    model, meta = load_checkpoint(path, device)
    return model, meta, device


@dataclass
class ShardInputs:
    """What a sharded job (audit, probes) works on: the model on its device and the shard's images and rows."""

    model: Classifier
    meta: dict[str, Any]
    device: torch.device
    images: np.ndarray
    labels: pd.DataFrame  # the shard's rows of the labels: row ``i`` describes ``images[i]``


def open_shard(
    model_path: str | os.PathLike,
    images_path: str | os.PathLike,
    labels_path: str | os.PathLike,
    shards: int,
    shard: int,
    device_name: str,
    threads: int,
) -> ShardInputs:
    """Load the model and open shard ``shard`` of ``shards``: its packed images and the label rows they hold."""
    model, meta, device = load_model(model_path, device_name, threads)
    labels = pd.read_parquet(labels_path)
    images = open_packed(images_path)
    rows = shard_labels(labels, len(images), shards, shard, images_path, labels_path)
    return ShardInputs(model, meta, device, images, rows)
