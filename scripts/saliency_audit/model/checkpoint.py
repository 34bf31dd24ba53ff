"""Model checkpoints (weights plus plain metadata) and device choice.

A checkpoint holds only tensors and plain Python values, so it loads with
``torch.load(..., weights_only=True)``: no pickled code runs when a model file
from someone else is opened. The bytes loaded are the bytes hashed: they must match
the checksum recorded when the workflow wrote the file, and their checksum is what
the audit and the provenance table report.
"""

import hashlib
import io
import os
import platform
from typing import Any

import torch

from saliency_audit.model.factory import Classifier, build_model
from saliency_audit.runtime.atomic_io import atomic_path
from saliency_audit.runtime.checksums import ContentMismatch, check_sha256


def select_device(requested: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is an error, not a silent CPU run."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested (train.device / audit.device) but CUDA is not available")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def describe_device(device: torch.device) -> str:
    """The accelerator's model name, or the CPU's, for the provenance table."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
    except OSError:
        names = []
    return f"cpu: {names[0] if names else platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def save_checkpoint(model: Classifier, metadata: dict[str, Any], path: str | os.PathLike) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, **metadata}, tmp)


class CheckpointError(ValueError):
    """A model file that is not a checkpoint of this workflow; the message says how to recover."""


def read_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The checkpoint's dictionary (weights and metadata, and ``file_sha256``: the checksum of the bytes
    loaded), loaded without running any pickled code; a file that is not what the workflow wrote
    (by its recorded checksum) is an error, never loaded.

    PyTorch's own message for a damaged or foreign file suggests ``weights_only=False``, which
    would run whatever code the file holds; it is never passed on.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise
    except OSError as error:
        raise CheckpointError(f"{path} cannot be read ({error.strerror or error})") from None
    try:
        digest = check_sha256(path, hashlib.sha256(data).hexdigest())
    except ContentMismatch as error:
        raise CheckpointError(str(error)) from None
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except Exception as error:  # damaged zip, a foreign pickle, a truncated copy: all the same to the user
        reason = type(error).__name__
        raise CheckpointError(
            f"{path} is not a checkpoint of this workflow (it cannot be read as plain tensors and values: {reason}); "
            "it is damaged or was written by something else. Delete it and run again to retrain."
        ) from None
    if not isinstance(checkpoint, dict) or not {"state_dict", "arch", "classes"} <= set(checkpoint):
        raise CheckpointError(
            f"{path} is not a checkpoint of this workflow (no weights and model metadata in it). "
            "Delete it and run again to retrain."
        )
    return {**checkpoint, "file_sha256": digest}


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[Classifier, dict[str, Any]]:
    """Rebuild the model from its metadata and load the weights, in eval mode."""
    checkpoint = read_checkpoint(path, device)
    state = checkpoint.pop("state_dict")
    regression = (
        (checkpoint["target_mean"], checkpoint["target_scale"]) if checkpoint.get("task") == "regression" else None
    )
    channels = int(checkpoint.get("channels", 3))  # checkpoints before image.channels took RGB
    model = build_model(checkpoint["arch"], len(checkpoint["classes"]), checkpoint["stride"], regression, channels)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(
            f"{path} does not fit the model it names ({checkpoint['arch']}): {str(error).splitlines()[0]}. "
            "Delete it and run again to retrain."
        ) from None
    return model.to(device).eval(), checkpoint
