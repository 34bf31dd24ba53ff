"""train: fit the configured CNN on the packed training images with a one-cycle schedule.

Normalisation statistics come from the training split only. Each epoch logs its
loss, the validation metrics and how long it waited for data. On a CPU the run
is deterministic for a given ``train.seed``; on CUDA it uses mixed precision and
channels-last memory, which are faster but not bit-reproducible. The training
curve is drawn by ``saliency_audit.report.model_figures``.

After every epoch the whole training state (model, optimiser, schedule, random number
generators, history) is written atomically beside the model, so a job killed by a time
limit or a preempted node resumes from its last finished epoch when it runs again; on a
CPU the resumed run ends with exactly the weights of an uninterrupted one.
"""

import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from saliency_audit.data.classes import predicted_values, training_mean, training_scale
from saliency_audit.data.image_io import read_rows
from saliency_audit.model.batches import batch_rows, channel_stats, dihedral, prefetch, to_tensor
from saliency_audit.model.checkpoint import describe_device
from saliency_audit.model.factory import Classifier, build_model, compiled
from saliency_audit.model.metrics import classification_metrics, regression_metrics
from saliency_audit.model.pretrained import load_matching, read_weights
from saliency_audit.runtime.atomic_io import atomic_path

RESUME_NAME = ".train-resume.pt"


class TrainingError(RuntimeError):
    """Training produced no model worth auditing; the message says what to change."""


@dataclass(frozen=True)
class TrainSettings:
    """The ``train`` section of the resolved config; its defaults are the schema's, never repeated here."""

    epochs: int
    lr: float
    batch_size: int
    weight_decay: float
    optimizer: str
    class_weights: bool
    seed: int
    compile: bool


def train_settings(config: dict[str, Any]) -> TrainSettings:
    """The config's ``train`` section as settings; ``device`` is chosen apart (``select_device``)."""
    return TrainSettings(**{k: v for k, v in config.items() if k != "device"})


def set_threads(threads: int) -> None:
    """Let PyTorch use the threads the rule was given, no more (its default is every core)."""
    torch.set_num_threads(threads)


def read_labels(path: str | os.PathLike) -> pd.DataFrame:
    """labels.parquet: id, target, class (categorical, in class order) and split, row i = packed image i."""
    return pd.read_parquet(path)


def training_labels(labels: pd.DataFrame, regression: bool = False) -> pd.DataFrame:
    """What training depends on in the labels, for its reuse key: each image's class and split; its target
    value only in a regression."""
    return labels[["id", "class", "split", *(["target"] if regression else [])]]


def resume_path(model_path: str | os.PathLike) -> Path:
    """Where training keeps its per-epoch state: beside the model and not an output of the rule, so
    that a killed job leaves it for the next run."""
    return Path(model_path).with_name(RESUME_NAME)


def clear_resume(model_path: str | os.PathLike) -> None:
    """Training is complete and its outputs are written: the per-epoch state has done its work."""
    resume_path(model_path).unlink(missing_ok=True)


def _save_state(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_state(path: Path | None, key: str) -> dict[str, Any] | None:
    """The saved training state if it belongs to this very job (same inputs, settings and code: ``key``)."""
    if path is None or not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged file: start over rather than fail
        print(f"ignoring the training state in {path}: it cannot be read ({error})", file=sys.stderr)
        return None
    if not isinstance(state, dict) or state.get("key") != key:
        print(f"ignoring the training state in {path}: it belongs to other inputs or settings", file=sys.stderr)
        return None
    return state


@dataclass
class Precision:
    """Mixed precision on CUDA (bfloat16 where supported, float16 with loss scaling otherwise)."""

    device: torch.device

    def __post_init__(self) -> None:
        cuda = self.device.type == "cuda"
        self.dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
        self.enabled = cuda
        self.scaler = torch.amp.GradScaler("cuda", enabled=cuda and self.dtype == torch.float16)
        self.channels_last = cuda

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.enabled)


OPTIMIZERS = ("adamw", "adam", "sgd")  # the schema's enum of train.optimizer (a test keeps them equal)


def make_optimizer(name: str, model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    raise ValueError(f"train.optimizer {name!r} is not one of {', '.join(OPTIMIZERS)}")


class DirectionLoss(nn.Module):
    """A regression's loss on its direction logits (``factory.DirectionHead``): the standardised
    prediction (logit of ``higher`` minus that of ``lower``, over the target's scale) against the
    standardised target; ``mse`` or ``huber`` (at one standard deviation)."""

    def __init__(self, scale: float, kind: str) -> None:
        super().__init__()
        if kind not in ("mse", "huber"):
            raise ValueError(f"target.loss {kind!r} is not one of mse, huber")
        self.scale, self.kind = scale, kind

    def forward(self, logits: torch.Tensor, standardised: torch.Tensor) -> torch.Tensor:
        predicted = (logits[:, 1] - logits[:, 0]).float() / self.scale
        if self.kind == "huber":
            return nn.functional.huber_loss(predicted, standardised, delta=1.0)
        return nn.functional.mse_loss(predicted, standardised)


def inverse_frequency(codes: np.ndarray, n_classes: int) -> torch.Tensor:
    """Loss weights that give every class the same total weight (mean weight 1)."""
    counts = np.bincount(codes, minlength=n_classes).astype(float)
    weights = counts.sum() / (n_classes * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32)


def predict_logits(
    model: nn.Module,
    images: np.ndarray,
    rows: np.ndarray,
    mean: list[float],
    std: list[float],
    batch_size: int,
    device: torch.device,
) -> np.ndarray:
    """Logits (float32, N x classes) for ``rows`` of the packed array, in that order.

    ``model`` is a ``Classifier`` or its compiled wrapper (``models.compiled``).
    """
    model.eval()
    out = []
    batches = list(batch_rows(rows, batch_size, shuffle=False, generator=None))
    with torch.inference_mode():
        for x in prefetch(lambda batch: to_tensor(read_rows(images, batch), mean, std, device), batches):
            out.append(model(x).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, cast(int, model.n_classes)), np.float32)


def train_one_epoch(
    model: nn.Module,
    images: np.ndarray,
    rows: np.ndarray,
    codes: np.ndarray,
    settings: TrainSettings,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: nn.Module,
    norm: tuple[list[float], list[float]],
    generator: torch.Generator,
    precision: Precision,
    progress: tqdm,
    epoch: int = 1,
) -> tuple[float, float]:
    """One pass over the training rows; returns (mean loss, seconds spent waiting for data).
    Stops with TrainingError as soon as the loss is not finite."""
    model.train()
    device = precision.device
    total_loss, seen, waiting = torch.zeros((), device=device), 0, 0.0
    batches = list(batch_rows(rows, settings.batch_size, shuffle=True, generator=generator))

    def load(batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = dihedral(to_tensor(read_rows(images, batch), *norm, device, precision.channels_last), generator)
        return x, torch.from_numpy(codes[batch]).to(device, non_blocking=True)

    started = time.perf_counter()
    for step, (batch, (x, y)) in enumerate(zip(batches, prefetch(load, batches))):
        waiting += time.perf_counter() - started  # the step had to wait this long for its batch
        with precision.autocast():
            loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        precision.scaler.scale(loss).backward()
        precision.scaler.step(optimizer)
        precision.scaler.update()
        scheduler.step()
        total_loss += loss.detach() * len(batch)  # stays on the device: no sync per step
        seen += len(batch)
        progress.update(len(batch))
        if step % 10 == 0:
            mean_loss = total_loss.item() / seen
            progress.set_postfix(loss=f"{mean_loss:.4f}")
            check_loss(mean_loss, epoch, step + 1, scheduler)
        started = time.perf_counter()
    mean_loss = total_loss.item() / max(seen, 1)
    check_loss(mean_loss, epoch, len(batches), scheduler)
    return mean_loss, waiting


def check_loss(loss: float, epoch: int, step: int, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
    """A loss that is not finite leaves a model of NaN weights: stop before it is audited."""
    if not np.isfinite(loss):
        peak = scheduler.optimizer.param_groups[0].get("max_lr", scheduler.get_last_lr()[0])
        raise TrainingError(
            f"training diverged: the loss is {loss} in epoch {epoch} (step {step}). Lower train.lr "
            f"(now {peak:g}, e.g. to {peak / 10:g}); no model was written"
        )


def chance_auc(codes: np.ndarray, n_classes: int) -> float:
    """The ROC AUC (one-vs-rest macro for more classes) below which a model's ranking of these
    labels is no better than a random one: 0.5 plus two standard deviations of the Mann-Whitney
    statistic under no relation, sqrt((n1 + n0 + 1) / (12 n1 n0)), averaged over the classes.

    On a tiny split this bound is 1 or more (two classes: whenever 3 n1 n0 <= 4 (n1 + n0 + 1), so a
    class of one image against any number, two against at most six, three against three): no ranking,
    not even a perfect one, beats it, and ``check_learned`` skips the check."""
    positives = np.bincount(codes, minlength=n_classes).astype(float)
    negatives = len(codes) - positives
    ok = (positives > 0) & (negatives > 0)
    spread = np.sqrt((positives[ok] + negatives[ok] + 1) / (12 * positives[ok] * negatives[ok]))
    return float(0.5 + 2 * spread.mean()) if ok.any() else 1.0


def class_sizes(codes: np.ndarray, classes: list[str], shown: int = 3) -> str:
    """The smallest classes and their numbers of images, fewest first: "class 'b' has 1 training image, 'a' 30"."""
    counts = np.bincount(codes, minlength=len(classes))
    order = np.argsort(counts, kind="stable")
    first = int(order[0])
    text = f"class {classes[first]!r} has {counts[first]} training image{'s' if counts[first] != 1 else ''}"
    text += "".join(f", {classes[k]!r} {counts[k]}" for k in order[1:shown])
    return text + (f" (and {len(classes) - shown} more classes)" if len(classes) > shown else "")


def check_learned(auc: float, codes: np.ndarray, classes: list[str], epochs: int, lr: float) -> None:
    """A model that ranks its own training images (class ``codes``) no better than chance has nothing to audit.

    When the training split is too small for the check to decide (``chance_auc`` reaches 1, the best
    ROC AUC there is), the check is skipped with a warning naming the smallest classes and their sizes."""
    threshold = chance_auc(codes, len(classes))
    if threshold >= 1:
        print(
            f"warning: the chance-level check is skipped: the training split is too small to tell a model from a "
            f"random ranking ({class_sizes(codes, classes)}); even a perfect ranking (ROC AUC 1) lies within two "
            f"standard deviations of chance. The model is kept (ROC AUC {auc:.3f} on the training split), but "
            "metrics on so few images say little: add images to the smallest classes for the check to apply",
            file=sys.stderr,
        )
        return
    if not auc > threshold:
        raise TrainingError(
            f"the model ends at chance level on the training split (ROC AUC {auc:.3f} after {epochs} epochs; a random "
            f"ranking of these images reaches {threshold:.3f} at two standard deviations): it learned nothing to "
            f"audit. Lower train.lr (now {lr:g}), train longer (train.epochs) or check that the classes differ in "
            "the images; no model was written"
        )


def check_learned_regression(values: np.ndarray, predicted: np.ndarray, epochs: int, lr: float) -> None:
    """A regression whose predictions on its own training images do not follow the target (Pearson
    correlation within two standard deviations of zero, 2 / sqrt(n)) has nothing to audit."""
    threshold = 2 / np.sqrt(max(len(values), 1))
    spread = np.std(predicted) * np.std(values)
    correlation = float(np.mean((predicted - predicted.mean()) * (values - values.mean())) / spread) if spread else 0.0
    if not correlation > threshold:
        raise TrainingError(
            f"the model ends at chance level on the training split (correlation of prediction and target "
            f"{correlation:.3f} after {epochs} epochs; unrelated values reach {threshold:.3f} at two standard "
            f"deviations): it learned nothing to audit. Lower train.lr (now {lr:g}), train longer (train.epochs) "
            "or check that the target shows in the images; no model was written"
        )


def epoch_scores(
    logits: np.ndarray, rows: np.ndarray, codes: np.ndarray, labels: pd.DataFrame, mean: float | None
) -> dict[str, float]:
    """The validation scores of one epoch: accuracy, ROC AUC and F1 of the classes; for a regression
    (``mean``: the training mean) rmse, mae and r2 of the predicted values."""
    if mean is None:
        scores = classification_metrics(codes[rows], torch.softmax(torch.from_numpy(logits), 1).numpy())
        return {k: scores[k] for k in ("accuracy", "roc_auc", "f1")}
    scores = regression_metrics(labels["target"].to_numpy()[rows], predicted_values(logits, mean))
    return {k: scores[k] for k in ("rmse", "mae", "r2")}


def fit(
    images: np.ndarray,
    labels: pd.DataFrame,
    arch: str,
    stride: int,
    settings: TrainSettings,
    device: torch.device,
    resume: str | os.PathLike | None = None,
    key: str = "",
    start_from: str | os.PathLike | None = None,
    norm: tuple[list[float], list[float]] | None = None,
    regression_loss: str | None = None,
) -> tuple[Classifier, pd.DataFrame, dict[str, Any]]:
    """Train on the 'train' rows of ``labels`` (row i = packed image i); validate on 'valid'.

    With ``resume`` (``resume_path``), the state after each epoch is saved there and a state saved by an
    earlier, interrupted run of the same job (``key``) is continued from its last finished epoch.
    With ``start_from`` (``model.weights``), training starts from the tensors of that file that fit the
    model (``pretrained.load_matching``; the skipped ones are logged). ``norm`` (``image.mean``,
    ``image.std``) is the input normalisation; without it, that of the train split.
    With ``regression_loss`` (``target.loss``), the model is a regression of ``labels``' target, standardised
    by the train split's mean and standard deviation (``factory.DirectionHead``; ``DirectionLoss``).
    Returns the model (never its compiled wrapper), the per-epoch history and the checkpoint metadata.
    """
    classes = list(labels["class"].cat.categories)
    codes = labels["class"].cat.codes.to_numpy().astype(np.int64)
    train_rows = np.flatnonzero(labels["split"].to_numpy() == "train")
    valid_rows = np.flatnonzero(labels["split"].to_numpy() == "valid")
    regression: tuple[float, float] | None = None
    if regression_loss is not None:
        values = labels["target"].to_numpy(dtype=np.float64)
        regression = (training_mean(labels), training_scale(labels))
        codes = ((values - regression[0]) / regression[1]).astype(np.float32)  # what the loss compares
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    norm = norm or channel_stats(images, train_rows)

    precision = Precision(device)
    model = build_model(arch, len(classes), stride, regression, channels=int(images.shape[-1]))
    source: dict[str, Any] = {"trained_here": True}
    if start_from is not None:
        initial, _, digest = read_weights(start_from, "model.weights")
        skipped = load_matching(model, initial, "model.weights", start_from)
        print(f"started from {start_from} (SHA-256 {digest[:12]}...): {len(initial) - len(skipped)} tensors "
              f"loaded, {len(skipped)} skipped (not in the model or of another shape): {skipped}",
              file=sys.stderr)  # fmt: skip
        source.update(weights=str(start_from), weights_sha256=digest)
    model = model.to(device)
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    network = compiled(model) if settings.compile else model  # shares model's parameters
    optimizer = make_optimizer(settings.optimizer, model, settings.lr, settings.weight_decay)
    steps = -(-len(train_rows) // settings.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=settings.lr, epochs=settings.epochs, steps_per_epoch=steps
    )
    loss_fn: nn.Module
    if regression is not None and regression_loss is not None:
        loss_fn = DirectionLoss(regression[1], regression_loss)
    else:
        weights = inverse_frequency(codes[train_rows], len(classes)).to(device) if settings.class_weights else None
        loss_fn = nn.CrossEntropyLoss(weight=weights)
    mean = None if regression is None else regression[0]
    valid_fn = loss_fn if regression is not None else nn.CrossEntropyLoss()  # unweighted, on the CPU

    history: list[dict[str, Any]] = []
    first = 0
    state_path = None if resume is None else Path(resume)
    state = _load_state(state_path, key)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        precision.scaler.load_state_dict(state["scaler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng"):
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        history, first = list(state["history"]), int(state["epoch"])
        print(f"resumed from the state after epoch {first} of {settings.epochs} ({state_path})", file=sys.stderr)
    for epoch in range(first, settings.epochs):
        started = time.perf_counter()
        with tqdm(total=len(train_rows), desc=f"epoch {epoch + 1}/{settings.epochs}", unit="img") as progress:
            train_loss, waiting = train_one_epoch(
                network, images, train_rows, codes, settings, optimizer, scheduler, loss_fn, norm,
                generator, precision, progress, epoch + 1,
            )  # fmt: skip
        train_seconds = time.perf_counter() - started
        logits = predict_logits(network, images, valid_rows, *norm, 2 * settings.batch_size, device)
        valid_loss = float(valid_fn(torch.from_numpy(logits), torch.from_numpy(codes[valid_rows])))
        scores = epoch_scores(logits, valid_rows, codes, labels, mean)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "valid_loss": valid_loss,
                **scores,
                "lr": scheduler.get_last_lr()[0],
                "seconds": time.perf_counter() - started,
                "train_seconds": train_seconds,
                "data_seconds": waiting,
            }
        )
        shown = " ".join(f"{name} {value:.4f}" for name, value in scores.items())
        print(
            f"epoch {epoch + 1}: train_loss {train_loss:.4f} valid_loss {valid_loss:.4f} {shown} "
            f"({train_seconds:.1f} s training, {waiting / train_seconds:.1%} waiting for data)",
            file=sys.stderr,
        )
        if state_path is not None:
            _save_state(
                state_path,
                {
                    "key": key,
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": precision.scaler.state_dict(),
                    "generator": generator.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
                    "history": history,
                },
            )
    # the final model on its own training images, without augmentation: has it learned anything?
    train_logits = predict_logits(network, images, train_rows, *norm, 2 * settings.batch_size, device)
    if mean is None:
        train_probs = torch.softmax(torch.from_numpy(train_logits), 1).numpy()
        train_scores = classification_metrics(codes[train_rows], train_probs)
        check_learned(train_scores["roc_auc"], codes[train_rows], classes, settings.epochs, settings.lr)
        print(f"training split: ROC AUC {train_scores['roc_auc']:.4f}, accuracy {train_scores['accuracy']:.4f}",
              file=sys.stderr)  # fmt: skip
    else:
        values, predicted = labels["target"].to_numpy()[train_rows], predicted_values(train_logits, mean)
        check_learned_regression(values, predicted, settings.epochs, settings.lr)
        fitted = regression_metrics(values, predicted)
        print(f"training split: RMSE {fitted['rmse']:.4g}, R2 {fitted['r2']:.4f}", file=sys.stderr)
    metadata = {
        "arch": arch,
        "stride": stride,
        "classes": classes,
        "image_size": int(images.shape[1]),
        "channels": int(images.shape[-1]),
        "mean": norm[0],
        "std": norm[1],
        "target_layer": model.target_layer,
        "train": asdict(settings),
        "device": str(device),
        "device_name": describe_device(device),
        "source": source,
        "task": "classification" if regression is None else "regression",
        **({} if regression is None else {"target_mean": regression[0], "target_scale": regression[1]}),
    }
    return model, pd.DataFrame(history), metadata
