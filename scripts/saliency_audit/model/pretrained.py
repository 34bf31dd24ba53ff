"""Weights that come from elsewhere: ``model.weights`` (a state_dict to start training from) and
``model.checkpoint`` (a trained model to audit without training).

A file is read with ``torch.load(..., weights_only=True)`` (no pickled code runs) and may be a
plain state_dict or a dict holding one under ``state_dict`` or ``model`` (this workflow's
``model.pt``, most training scripts). A torchvision network's own names (``layer4.0.conv1.weight``,
``fc.weight``) are translated to the ``Classifier``'s (``body.layer4.0.conv1.weight``,
``head.weight``) through the model's ``source_keys``; names already the ``Classifier``'s are kept.
"""

import hashlib
import io
import os
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from torch import nn

from saliency_audit.data.classes import DIRECTIONS, training_mean, training_scale
from saliency_audit.model.batches import channel_stats
from saliency_audit.model.factory import Classifier, build_model, restandardised


def read_weights(path: str | os.PathLike, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """The tensors of a weights file, the file's other entries (a checkpoint's metadata) and its SHA-256;
    ``key`` (the config key that named it) opens every error."""
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # a pickle of code, a damaged zip, not a torch file at all
        raise ValueError(f"config key {key}: {path} cannot be read as plain tensors ({type(error).__name__}); "
                         "save the model's state_dict() with torch.save") from None  # fmt: skip
    if not isinstance(loaded, dict):
        raise ValueError(f"config key {key}: {path} holds a {type(loaded).__name__}, not a state_dict")
    metadata: dict[str, Any] = {}
    for inner in ("state_dict", "model"):
        if isinstance(loaded.get(inner), dict):
            metadata = {k: v for k, v in loaded.items() if k != inner}
            loaded = loaded[inner]
            break
    tensors = {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f"config key {key}: {path} holds no tensors")
    return tensors, metadata, hashlib.sha256(data).hexdigest()


def own_names(model: Classifier, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` under the model's own names: torchvision's translated, the model's own kept, a ``module.``
    prefix (DataParallel) or ``_orig_mod.`` (torch.compile) dropped."""
    source = model.source_keys
    out = {}
    for name, tensor in state.items():
        bare = name.removeprefix("module.").removeprefix("_orig_mod.")
        out[source.get(bare, bare)] = tensor
    return out


def load_matching(model: Classifier, state: dict[str, torch.Tensor], key: str, path: str | os.PathLike) -> list[str]:
    """Load every tensor of ``state`` whose name and shape fit the model (the rest, e.g. a classifier head
    for other classes, keep their initialisation); return the names skipped. None fitting is an error."""
    renamed = own_names(model, state)
    own = model.state_dict()
    fits = {name: tensor for name, tensor in renamed.items() if name in own and own[name].shape == tensor.shape}
    if not fits:
        example, wanted = next(iter(state)), next(iter(own))
        raise ValueError(f"config key {key}: no tensor of {path} fits the model (its keys, e.g. {example!r}, are "
                         f"not the model's, e.g. {wanted!r}, or their shapes differ): is model.arch the network "
                         "these weights belong to?")  # fmt: skip
    model.load_state_dict(fits, strict=False)
    return sorted(name for name in renamed if name not in fits)


def import_checkpoint(
    path: str | os.PathLike,
    model_config: dict[str, Any],
    image_config: dict[str, Any],
    images: np.ndarray,
    labels: pd.DataFrame,
    regression: bool = False,
) -> tuple[Classifier, dict[str, Any]]:
    """The trained model of ``model.checkpoint`` with the metadata of this workflow's checkpoints.

    The file is this workflow's ``model.pt`` (its architecture, classes and normalisation are
    its own and must agree with the run's) or a plain state_dict of ``model.arch``, whose output
    order is ``model.classes`` and input normalisation ``image.mean`` / ``image.std`` (0-1 scale;
    when absent, measured on the train split as training does). Every tensor must fit.

    With ``regression`` (``target.task: regression``) a plain state_dict has one output, the target
    in its own units, and a ``model.pt`` is a regression's; either is read through the directions
    about this run's training mean (``factory.restandardised``), its predictions unchanged.
    """
    key = "model.checkpoint"
    state, stored, digest = read_weights(path, key)
    kept = [str(c) for c in labels["class"].cat.categories]
    arch = str(stored.get("arch", model_config["arch"]))
    if arch != model_config["arch"]:
        raise ValueError(f"config key {key}: {path} is a {arch} checkpoint, but model.arch is {model_config['arch']}")
    task = "regression" if regression else "classification"
    if str(stored.get("task", task)) != task:
        raise ValueError(f"config key {key}: {path} is a {stored['task']} model, but target.task is {task}")
    if regression:
        classes = list(DIRECTIONS)
    else:
        classes = [str(c) for c in stored.get("classes", model_config.get("classes") or [])]
    if not classes:
        raise ValueError(f"config key model.classes: {path} is a plain state_dict; list the classes of its outputs, "
                         f"in order (the kept classes are {kept})")  # fmt: skip
    if classes != kept:
        raise ValueError(f"config key model.classes: the model's outputs are {classes}, but the run keeps {kept} "
                         "(target.labels / target.keep, in this order)")  # fmt: skip
    stride = int(stored.get("stride", model_config["stride"]))
    channels = int(images.shape[-1])
    trained = (float(stored["target_mean"]), float(stored["target_scale"])) if "target_mean" in stored else None
    outputs = 1 if regression and trained is None else len(classes)
    model = build_model(arch, outputs, stride, trained if regression else None, channels)
    renamed = own_names(model, state)
    own = model.state_dict()
    missing = [name for name in own if name not in renamed]
    wrong = [name for name in own if name in renamed and renamed[name].shape != own[name].shape]
    if missing or wrong:
        name = (missing or wrong)[0]
        why = "has no tensor" if missing else f"has shape {tuple(renamed[name].shape)}, not {tuple(own[name].shape)},"
        raise ValueError(f"config key {key}: {path} {why} for {name!r} of {arch} with {outputs} outputs "
                         f"and {channels} input bands "
                         f"({len(missing)} missing, {len(wrong)} of another shape)")  # fmt: skip
    model.load_state_dict({name: renamed[name] for name in own})
    target: dict[str, Any] = {}
    if regression:
        centre, scale = training_mean(labels), training_scale(labels)
        value = cast(nn.Module, model.head.value) if trained is not None else model.head
        model.head = restandardised(value, *(trained or (0.0, 1.0)), centre, scale)
        model.n_classes = 2
        target = {"task": "regression", "target_mean": centre, "target_scale": scale}
    if "mean" in stored and "std" in stored:
        mean, std = [float(v) for v in stored["mean"]], [float(v) for v in stored["std"]]
    elif image_config.get("mean") is not None and image_config.get("std") is not None:
        mean, std = [float(v) for v in image_config["mean"]], [float(v) for v in image_config["std"]]
    else:
        mean, std = channel_stats(images, np.flatnonzero(labels["split"].to_numpy() == "train"))
    metadata = {
        "arch": arch,
        "stride": stride,
        "classes": classes,
        "image_size": int(images.shape[1]),
        "channels": channels,
        "mean": mean,
        "std": std,
        "target_layer": model.target_layer,
        "train": None,
        "device": str(stored.get("device", "unknown")),
        "device_name": f"not trained here ({stored.get('device_name', 'unknown device')})",
        "source": {"checkpoint": str(path), "sha256": digest, "trained_here": False},
        **target,
    }
    return model.eval(), metadata


def describe_import(metadata: dict[str, Any]) -> str:
    """The log line of an imported checkpoint."""
    source = metadata["source"]
    return (f"audit only, not trained here: {source['checkpoint']} (SHA-256 {source['sha256'][:12]}...), "
            f"{metadata['arch']}, classes {metadata['classes']}, mean {np.round(metadata['mean'], 4).tolist()}, "
            f"std {np.round(metadata['std'], 4).tolist()}")  # fmt: skip
