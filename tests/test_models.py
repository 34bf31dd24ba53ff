import hashlib
import os
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from torch._dynamo.utils import counters

from helpers import resolved_settings
from saliency_audit.model import training
from saliency_audit.model.architectures import FEATURE_WIDTHS
from saliency_audit.model.batches import channel_stats, dihedral, to_tensor
from saliency_audit.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from saliency_audit.model.factory import Classifier, build_model, find_module
from saliency_audit.model.metrics import binary_auc
from saliency_audit.model.training import (
    RESUME_NAME,
    TrainingError,
    chance_auc,
    check_learned,
    fit,
    inverse_frequency,
    make_optimizer,
)
from saliency_audit.runtime.checksums import record_sha256

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("arch", "stride", "size", "n_features", "map_size"),
    [
        ("simple_cnn", 2, 64, 128, 8),
        ("simple_cnn", 2, 96, 128, 12),
        ("simple_cnn", 1, 32, 128, 32),
        ("resnet18", 2, 64, 512, 4),
        ("resnet18", 2, 96, 512, 6),
    ],
)
def test_shapes_target_layer_and_penultimate(arch, stride, size, n_features, map_size) -> None:
    model = build_model(arch, 3, stride).eval()
    x = torch.randn(2, 3, size, size)
    captured = {}
    layer = find_module(model, model.target_layer)
    handle = layer.register_forward_hook(lambda m, i, o: captured.setdefault("map", o))
    with torch.no_grad():
        logits = model(x)
        features = model.features(x)
    handle.remove()
    assert logits.shape == (2, 3)
    assert features.shape == (2, n_features)
    assert captured["map"].shape == (2, n_features, map_size, map_size)
    torch.testing.assert_close(model.head(features), logits)
    torch.testing.assert_close(features, captured["map"].mean(dim=(2, 3)))


def test_simple_cnn_is_the_seeds_network() -> None:
    model = build_model("simple_cnn", 2, stride=1)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128]
    assert all(c.kernel_size == (3, 3) and c.bias is None and c.stride == (1, 1) for c in convs)
    assert model.target_layer == "body.2" and model.head.in_features == 128


def test_unknown_layer_lists_choices() -> None:
    with pytest.raises(ValueError, match=r"audit.layer 'body.9'.*body.2"):
        find_module(build_model("simple_cnn", 2), "body.9")


def test_one_training_step_lowers_the_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    model = build_model("simple_cnn", 2)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 2, (16,))
    optimizer = make_optimizer("adamw", model, 1e-2, 0.0)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    before = loss_fn(model(x), y)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = loss_fn(model(x), y)
    assert after.item() < before.item()


def toy_data(n: int = 48, size: int = 16) -> tuple[np.ndarray, pd.DataFrame]:
    """Bright-centre images are class 'b', dim ones 'a': learnable in a few steps."""
    rng = np.random.default_rng(0)
    codes = np.arange(n) % 2
    images = rng.integers(0, 60, (n, size, size, 3)).astype(np.uint8)
    images[codes == 1, size // 4 : -size // 4, size // 4 : -size // 4] += 150
    labels = pd.DataFrame(
        {
            "id": [f"g{i}" for i in range(n)],
            "class": pd.Categorical.from_codes(codes, ["a", "b"]),
            "split": np.where(np.arange(n) % 4 == 0, "valid", "train"),
        }
    )
    return images, labels


def test_cpu_training_is_deterministic_and_learns() -> None:
    images, labels = toy_data()
    settings = resolved_settings(epochs=3, lr=0.01, batch_size=8, seed=5)
    first, history, meta = fit(images, labels, "simple_cnn", 2, settings, torch.device("cpu"))
    second, _, _ = fit(images, labels, "simple_cnn", 2, settings, torch.device("cpu"))
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    other, _, _ = fit(images, labels, "simple_cnn", 2, resolved_settings(epochs=3, lr=0.01, batch_size=8, seed=6),
                      torch.device("cpu"))  # fmt: skip
    assert not torch.equal(first.head.weight, other.head.weight)
    assert list(history.columns[:6]) == ["epoch", "train_loss", "valid_loss", "accuracy", "roc_auc", "f1"]
    assert len(history) == 3 and history["accuracy"].iloc[-1] == 1.0
    assert meta["classes"] == ["a", "b"] and meta["image_size"] == 16 and meta["target_layer"] == "body.2"
    mean, _ = channel_stats(images, np.flatnonzero(labels["split"] == "train"))
    assert meta["mean"] == mean


def test_a_run_killed_after_epoch_1_of_3_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch) -> None:
    images, labels = toy_data()
    settings = resolved_settings(epochs=3, lr=0.01, batch_size=8, seed=5)
    cpu = torch.device("cpu")
    whole, whole_history, _ = fit(images, labels, "simple_cnn", 2, settings, cpu)
    state = tmp_path / "model" / RESUME_NAME
    epochs = []
    one_epoch = training.train_one_epoch

    def killed_in_epoch_2(*args, **kwargs):
        epochs.append(kwargs.get("epoch", args[-1]))
        if len(epochs) == 2:
            raise SystemExit(143)  # what start_job makes of Slurm's SIGTERM at the time limit
        return one_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_one_epoch", killed_in_epoch_2)
    with pytest.raises(SystemExit):
        fit(images, labels, "simple_cnn", 2, settings, cpu, state, key="job")
    assert torch.load(state, weights_only=True)["epoch"] == 1
    trained = []

    def counted(*args, **kwargs):
        trained.append(kwargs.get("epoch", args[-1]))
        return one_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_one_epoch", counted)
    resumed, history, _ = fit(images, labels, "simple_cnn", 2, settings, cpu, state, key="job")
    assert trained == [2, 3], "the rerun continues after the last finished epoch"
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    columns = ["epoch", "train_loss", "valid_loss", "accuracy", "roc_auc", "f1", "lr"]
    pd.testing.assert_frame_equal(history[columns], whole_history[columns])
    # another job's state (other inputs, settings or code) is never continued
    other, _, _ = fit(images, labels, "simple_cnn", 2, replace(settings, seed=6), cpu, state, key="other job")
    assert torch.load(state, weights_only=True)["key"] == "other job"
    assert not torch.equal(other.head.weight, whole.head.weight)


def test_a_diverging_run_stops_with_the_epoch_and_a_lower_learning_rate() -> None:
    images, labels = toy_data()
    diverged = r"training diverged: the loss is nan in epoch \d .*Lower train.lr \(now 1e\+06"
    with pytest.raises(TrainingError, match=diverged):
        fit(images, labels, "simple_cnn", 2, resolved_settings(epochs=2, lr=1e6, batch_size=8), torch.device("cpu"))


def test_a_model_at_chance_level_on_its_training_images_is_not_kept() -> None:
    images, labels = toy_data()
    images[:] = images[0]  # both classes look the same: nothing can be learned
    chance = r"chance level on the training split \(ROC AUC 0.500 after 2 epochs; a random ranking of these images"
    with pytest.raises(TrainingError, match=chance):
        fit(images, labels, "simple_cnn", 2, resolved_settings(epochs=2, lr=0.01, batch_size=8), torch.device("cpu"))


@pytest.mark.parametrize("others", [1, 30])
def test_a_class_of_two_images_skips_the_chance_check_with_a_warning_about_its_size(capsys, others) -> None:
    # 'b' has the documented minimum of two images: one trains, one validates. A random ranking of one
    # image against any number reaches ROC AUC 1 within two standard deviations (1.5 against one, 1.096
    # against 30): no model can beat that bound, so the check cannot decide and must not blame train.lr
    images, labels = toy_data(2 + others + 1)
    codes = np.r_[[1, 1], np.zeros(others + 1, int)]
    labels["class"] = pd.Categorical.from_codes(codes, ["a", "b"])
    labels["split"] = ["train", "valid"] + ["train"] * others + ["valid"]
    images[:] = images[0]  # even a model that learns nothing is kept: the check cannot tell
    assert chance_auc(codes[labels["split"] == "train"], 2) > 1
    fit(images, labels, "simple_cnn", 2, resolved_settings(epochs=2, lr=0.01, batch_size=8), CPU)
    log = capsys.readouterr().err
    warning = next(line for line in log.splitlines() if line.startswith("warning: the chance-level check"))
    smallest = "class 'a' has 1 training image, 'b' 1" if others == 1 else "class 'b' has 1 training image, 'a' 30"
    assert smallest in warning
    assert "too small" in warning and "train.lr" not in warning
    assert not re.search(r"\b(1\.\d*[1-9]|[2-9]\.\d+)", warning), "no bound above 1 is quoted"


def test_the_chance_check_applies_once_a_perfect_ranking_beats_chance() -> None:
    # binary: undecidable exactly where 3 n1 n0 <= 4 (n1 + n0 + 1), the bound 0.5 + 2 sd reaching 1
    for n1, n0, decides in [(1, 1000, False), (2, 6, False), (2, 7, True), (3, 3, False), (3, 4, True)]:
        codes = np.repeat([0, 1], [n0, n1])
        assert (chance_auc(codes, 2) < 1) is decides, (n1, n0)
        if decides:
            with pytest.raises(TrainingError, match=r"Lower train.lr"):
                check_learned(0.5, codes, ["a", "b"], 2, 0.01)
            check_learned(1.0, codes, ["a", "b"], 2, 0.01)  # a perfect ranking passes
        else:
            check_learned(0.5, codes, ["a", "b"], 2, 0.01)  # skipped with a warning, never an error


def test_checkpoint_round_trip_with_weights_only(tmp_path) -> None:
    model = build_model("resnet18", 3).eval()
    meta = {"arch": "resnet18", "stride": 2, "classes": ["x", "y", "z"], "mean": [0.1] * 3, "std": [0.2] * 3,
            "target_layer": model.target_layer, "train": {"lr": 0.1}}  # fmt: skip
    save_checkpoint(model, meta, tmp_path / "model.pt")
    raw = torch.load(tmp_path / "model.pt", weights_only=True)
    assert set(raw) == set(meta) | {"state_dict"}
    loaded, loaded_meta = load_checkpoint(tmp_path / "model.pt")
    digest = hashlib.sha256((tmp_path / "model.pt").read_bytes()).hexdigest()
    assert loaded_meta == {**meta, "file_sha256": digest} and not loaded.training
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


@pytest.mark.parametrize("arch", ["simple_cnn", "resnet18"])
def test_a_five_band_model_round_trips_with_its_bands(tmp_path, arch) -> None:
    model = build_model(arch, 2, channels=5).eval()
    meta = {"arch": arch, "stride": 2, "classes": ["x", "y"], "channels": 5, "mean": [0.1] * 5, "std": [0.2] * 5,
            "target_layer": model.target_layer}  # fmt: skip
    save_checkpoint(model, meta, tmp_path / "model.pt")
    loaded, _ = load_checkpoint(tmp_path / "model.pt")
    x = torch.randn(2, 5, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


class Payload:
    """A pickled object whose unpickling would run code: torch.load(weights_only=True) refuses it."""

    def __reduce__(self):
        return (print, ("this ran",))


@pytest.mark.parametrize("damage", ["random bytes", "truncated", "foreign pickle", "empty", "other tensors"])
def test_a_damaged_model_file_says_delete_to_retrain_and_never_suggests_unsafe_loading(tmp_path, damage) -> None:
    model = build_model("simple_cnn", 2).eval()
    meta = {"arch": "simple_cnn", "stride": 2, "classes": ["a", "b"], "mean": [0.1] * 3, "std": [0.2] * 3}
    path = tmp_path / "model.pt"
    save_checkpoint(model, meta, path)
    if damage == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:2000])
    elif damage == "foreign pickle":
        torch.save({"state_dict": Payload(), "arch": "simple_cnn", "classes": ["a", "b"]}, path)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert "is not a checkpoint of this workflow" in message and "Delete it and run again to retrain" in message
    assert "weights_only" not in message and "False" not in message


def test_a_model_whose_bytes_changed_with_its_time_kept_is_never_loaded(tmp_path) -> None:
    model = build_model("simple_cnn", 2).eval()
    meta = {"arch": "simple_cnn", "stride": 2, "classes": ["a", "b"], "mean": [0.1] * 3, "std": [0.2] * 3}
    path = tmp_path / "model.pt"
    save_checkpoint(model, meta, path)
    record_sha256(path)  # as the train job records what it wrote
    weights = bytearray(path.read_bytes())
    stat = path.stat()
    offset = weights.index(b"PK\x03\x04", len(weights) // 2) - 64  # inside a tensor's stored bytes
    weights[offset] ^= 0x40  # one flipped bit: still a valid zip for torch.load, other weights
    path.write_bytes(bytes(weights))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    torch.load(path, weights_only=True)  # what was loaded, unchecked, before
    with pytest.raises(CheckpointError, match=r"model\.pt has changed since the workflow wrote it") as error:
        load_checkpoint(path)
    assert "delete" in str(error.value)


def test_channel_stats_match_numpy() -> None:
    images = np.random.default_rng(1).integers(0, 255, (30, 8, 8, 3), dtype=np.uint8)
    rows = np.array([3, 1, 7, 20, 29])
    mean, std = channel_stats(images, rows, chunk=2)
    subset = images[rows].astype(np.float64) / 255
    np.testing.assert_allclose(mean, subset.mean(axis=(0, 1, 2)))
    np.testing.assert_allclose(std, subset.std(axis=(0, 1, 2)))


def test_dihedral_applies_the_eight_symmetries() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(400, 1, 1, 1)
    out = dihedral(x, torch.Generator().manual_seed(0))
    expected = [torch.rot90(x[0], k, (-2, -1)) for k in range(4)]
    expected += [torch.rot90(x[0].flip(-1), k, (-2, -1)) for k in range(4)]
    seen = [next(k for k, e in enumerate(expected) if torch.equal(o, e)) for o in out]
    assert sorted(set(seen)) == list(range(8))
    assert min(np.bincount(seen)) > 25


def test_inverse_frequency_weights_balance_classes() -> None:
    weights = inverse_frequency(np.array([0, 0, 0, 1]), 2)
    torch.testing.assert_close(weights, torch.tensor([2 / 3, 2.0]))


@pytest.mark.parametrize(
    ("name", "kind"), [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)]
)
def test_optimizer_choice(name: str, kind: type) -> None:
    optimizer = make_optimizer(name, build_model("simple_cnn", 2), 0.01, 0.001)
    assert type(optimizer) is kind and optimizer.defaults["weight_decay"] == 0.001
    with pytest.raises(ValueError, match="train.optimizer 'lamb'"):
        make_optimizer("lamb", build_model("simple_cnn", 2), 0.01, 0.0)


def test_class_weights_change_the_training() -> None:
    images, labels = toy_data()
    labels.loc[labels.index[:20], "class"] = "a"  # imbalance
    weighted, _, meta = fit(
        images, labels, "simple_cnn", 2, resolved_settings(epochs=1, lr=0.01, batch_size=8, class_weights=True), CPU
    )
    plain, _, _ = fit(
        images, labels, "simple_cnn", 2, resolved_settings(epochs=1, lr=0.01, batch_size=8, class_weights=False), CPU
    )
    assert meta["train"]["class_weights"] is True
    assert not torch.equal(weighted.head.weight, plain.head.weight)


def test_resnet18_has_torchvision_s_layout_with_the_cutout_stem() -> None:
    from torchvision.models import resnet18

    ours = build_model("resnet18", 3).body.state_dict()
    reference = {k: v for k, v in resnet18(weights=None, num_classes=3).state_dict().items() if not k.startswith("fc.")}
    reference["conv1.weight"] = torch.empty(64, 3, 3, 3)  # the cutout stem: 3x3 stride 2, no max pool
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in reference.items()}

    torch.manual_seed(0)
    model = build_model("resnet18", 3).eval()
    twin = resnet18(weights=None, num_classes=3).eval()
    twin.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
    twin.maxpool = torch.nn.Identity()
    twin.load_state_dict({**model.body.state_dict(), "fc.weight": model.head.weight, "fc.bias": model.head.bias})
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), twin(x))


@pytest.mark.slow
def test_compiled_training_follows_eager_and_saves_plain_weights(tmp_path) -> None:
    """train.compile: same learning to float rounding; the checkpoint holds the model, not the wrapper."""
    images, labels = toy_data()  # 36 training images in batches of 8: a short last batch
    settings = resolved_settings(epochs=2, lr=0.01, batch_size=8, seed=5)
    _, eager_history, _ = fit(images, labels, "simple_cnn", 2, settings, CPU)
    torch._dynamo.reset()
    counters.clear()
    model, history, meta = fit(images, labels, "simple_cnn", 2, replace(settings, compile=True), CPU)
    assert counters["stats"]["unique_graphs"] == 2  # training and eval mode; no recompile for the short batch
    assert type(model) is Classifier and meta["train"]["compile"] is True
    np.testing.assert_allclose(history["train_loss"], eager_history["train_loss"], rtol=1e-3)
    np.testing.assert_allclose(history["valid_loss"], eager_history["valid_loss"], rtol=1e-3)
    save_checkpoint(model, meta, tmp_path / "model.pt")
    loaded, _ = load_checkpoint(tmp_path / "model.pt")
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_the_config_checks_know_every_architecture_s_feature_width() -> None:
    for arch, width in FEATURE_WIDTHS.items():
        assert build_model(arch, 2).head.in_features == width


def test_the_chance_threshold_is_what_random_rankings_exceed_two_percent_of_the_time() -> None:
    rng = np.random.default_rng(4)
    codes = np.repeat([0, 1], [15, 25])
    threshold = chance_auc(codes, 2)
    aucs = [binary_auc(codes == 1, rng.random(len(codes))) for _ in range(4000)]
    assert 0.012 < np.mean(np.asarray(aucs) > threshold) < 0.035  # one-sided 2 sigma: 2.3%
    three = np.repeat([0, 1, 2], [30, 20, 10])
    assert 0.5 < chance_auc(three, 3) < chance_auc(three[::2], 3)  # fewer images, wider chance band


@pytest.mark.parametrize("channels_last", [False, True])
def test_to_tensor_scales_each_channel_exactly(channels_last: bool) -> None:
    """(pixel / 255 - mean) / std per channel, bit for bit, in the memory layout asked for."""
    batch = np.random.default_rng(3).integers(0, 256, (5, 7, 9, 3), dtype=np.uint8)
    mean, std = [0.1, 0.25, 0.5], [0.3, 0.2, 0.125]
    x = to_tensor(batch, mean, std, torch.device("cpu"), channels_last)
    expected = np.stack(
        [
            (batch[..., c].astype(np.float32) / np.float32(255.0) - np.float32(mean[c])) / np.float32(std[c])
            for c in range(3)
        ],
        axis=1,
    )
    np.testing.assert_array_equal(x.numpy(), expected)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=layout)


def toy_regression(n: int = 64, size: int = 16) -> tuple[np.ndarray, pd.DataFrame]:
    """The target is the brightness of a central square (plus noise): learnable in a few epochs."""
    rng = np.random.default_rng(3)
    values = rng.uniform(8.0, 9.5, n)
    images = rng.integers(0, 40, (n, size, size, 3)).astype(np.uint8)
    brightness = ((values - 8.0) * 120).astype(np.uint8)[:, None, None, None]
    images[:, size // 4 : -size // 4, size // 4 : -size // 4] += brightness
    split = np.where(np.arange(n) % 4 == 0, "valid", "train")
    mean = values[split == "train"].mean()
    labels = pd.DataFrame(
        {
            "id": [f"g{i}" for i in range(n)],
            "target": values,
            "class": pd.Categorical.from_codes((values > mean).astype(int), ["lower", "higher"]),
            "split": split,
        }
    )
    return images, labels


@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_a_regression_learns_the_value_and_its_logits_are_the_two_directions(tmp_path, loss) -> None:
    from saliency_audit.data.classes import predicted_values

    images, labels = toy_regression()
    settings = resolved_settings(epochs=8, lr=0.01, batch_size=8, seed=5)
    model, history, meta = fit(images, labels, "simple_cnn", 2, settings, CPU, regression_loss=loss)
    train = labels["split"] == "train"
    assert meta["task"] == "regression" and meta["target_mean"] == pytest.approx(labels["target"][train].mean())
    assert meta["target_scale"] == pytest.approx(labels["target"][train].std(ddof=0))
    assert {"rmse", "mae", "r2"} <= set(history.columns) and "accuracy" not in history
    assert history["r2"].iloc[-1] > 0.5 and history["rmse"].iloc[-1] < labels["target"].std()
    x = to_tensor(images, meta["mean"], meta["std"], CPU)
    with torch.no_grad():
        logits = model(x)
        standardised = model.head.value(model.features(x))[:, 0]
    torch.testing.assert_close(logits[:, 0], -logits[:, 1])  # lower is the negative of higher
    expected = meta["target_mean"] + meta["target_scale"] * standardised.numpy()
    np.testing.assert_allclose(predicted_values(logits, meta["target_mean"]), expected, rtol=1e-5)
    # the checkpoint rebuilds the same regression
    save_checkpoint(model, meta, tmp_path / "model.pt")
    loaded, _ = load_checkpoint(tmp_path / "model.pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), logits)


def test_a_regression_that_learned_nothing_is_not_kept() -> None:
    from saliency_audit.model.training import check_learned_regression

    rng = np.random.default_rng(0)
    values = rng.normal(size=400)
    with pytest.raises(TrainingError, match="chance level"):
        check_learned_regression(values, rng.normal(size=400), 3, 0.01)
    with pytest.raises(TrainingError, match="chance level"):
        check_learned_regression(values, np.zeros(400), 3, 0.01)  # a constant prediction
    check_learned_regression(values, values + rng.normal(size=400) * 0.5, 3, 0.01)


def test_the_closed_form_grad_cam_of_a_regression_equals_autograd() -> None:
    from saliency_audit.audit.gradcam import GradCAM, linear_tail

    model = build_model("simple_cnn", 2, regression=(9.0, 0.3)).eval()
    assert linear_tail(model, find_module(model, model.target_layer))
    x = torch.randn(3, 3, 32, 32)
    with GradCAM(model, model.target_layer) as cam:
        closed = cam(x)
    body = find_module(model, model.target_layer)
    captured = {}
    handle = body.register_forward_hook(lambda m, i, o: captured.setdefault("a", o))
    out = model(x)
    handle.remove()
    a = captured["a"]
    for k in range(2):  # Grad-CAM by autograd of each direction's logit
        (grads,) = torch.autograd.grad(out[:, k].sum(), a, retain_graph=True)
        expected = torch.relu((grads.mean(dim=(2, 3))[:, :, None, None] * a).sum(1))
        torch.testing.assert_close(closed.cams[:, k], expected.detach(), rtol=1e-4, atol=1e-6)
