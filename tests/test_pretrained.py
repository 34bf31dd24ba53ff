"""Weights from elsewhere: model.weights (start training from them) and model.checkpoint (audit them)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision.models as tvm

from saliency_audit.model.checkpoint import save_checkpoint
from saliency_audit.model.factory import build_model
from saliency_audit.model.pretrained import import_checkpoint, load_matching, read_weights

ARCH = "torchvision:mobilenet_v2"  # the smallest torchvision family: fast to build


def labels_of(classes: list[str], n: int = 12) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"g{i}" for i in range(n)],
                         "class": pd.Categorical.from_codes(np.arange(n) % len(classes), classes),
                         "split": np.where(np.arange(n) < 8, "train", "valid")})  # fmt: skip


def images_of(n: int = 12) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def plain_state(classes: int, path: Path) -> dict[str, torch.Tensor]:
    """A plain torchvision state_dict (its own names), as a user downloads or saves one."""
    torch.manual_seed(3)
    state = tvm.get_model("mobilenet_v2", weights=None, num_classes=classes).state_dict()
    torch.save(state, path)
    return state


def test_imagenet_weights_load_but_the_head_of_other_classes_is_skipped(tmp_path: Path) -> None:
    state = plain_state(1000, tmp_path / "imagenet.pth")
    model = build_model(ARCH, 2)
    head_before = model.head[1].weight.detach().clone()
    tensors, _, digest = read_weights(tmp_path / "imagenet.pth", "model.weights")
    skipped = load_matching(model, tensors, "model.weights", tmp_path / "imagenet.pth")
    assert skipped == ["head.1.bias", "head.1.weight"] and len(digest) == 64
    torch.testing.assert_close(model.body[0][0].weight, state["features.0.0.weight"])
    torch.testing.assert_close(model.body[3].conv[1][1].running_var, state["features.3.conv.1.1.running_var"])
    torch.testing.assert_close(model.head[1].weight, head_before)  # kept its initialisation


def test_rgb_weights_start_a_five_band_model_but_its_first_convolution(tmp_path: Path) -> None:
    state = plain_state(1000, tmp_path / "imagenet.pth")
    model = build_model(ARCH, 2, channels=5)
    tensors, _, _ = read_weights(tmp_path / "imagenet.pth", "model.weights")
    skipped = load_matching(model, tensors, "model.weights", tmp_path / "imagenet.pth")
    assert skipped == ["body.0.0.weight", "head.1.bias", "head.1.weight"]
    assert model.body[0][0].weight.shape[1] == 5
    torch.testing.assert_close(model.body[0][1].running_var, state["features.0.1.running_var"])


def test_weights_of_another_network_are_an_error_naming_a_key(tmp_path: Path) -> None:
    torch.save(tvm.get_model("resnet18", weights=None).state_dict(), tmp_path / "resnet.pth")
    tensors, _, _ = read_weights(tmp_path / "resnet.pth", "model.weights")
    with pytest.raises(ValueError, match=r"config key model.weights: no tensor of .*resnet.pth fits the model "
                                         r"\(its keys, e.g. 'conv1.weight', are not the model's"):  # fmt: skip
        load_matching(build_model(ARCH, 2), tensors, "model.weights", tmp_path / "resnet.pth")


def test_a_file_of_pickled_code_is_never_loaded(tmp_path: Path) -> None:
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hook": Path("x")}, tmp_path / "code.pt")
    with pytest.raises(ValueError, match="cannot be read as plain tensors"):
        read_weights(tmp_path / "code.pt", "model.checkpoint")


def test_a_plain_state_dict_is_imported_with_its_classes_and_normalisation(tmp_path: Path) -> None:
    state = plain_state(2, tmp_path / "mine.pth")
    labels, images = labels_of(["low", "high"]), images_of()
    config = {"arch": ARCH, "stride": 2, "classes": ["low", "high"]}
    imagenet = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    model, meta = import_checkpoint(tmp_path / "mine.pth", config, imagenet, images, labels)
    x = torch.randn(2, 3, 32, 32)
    plain = tvm.get_model("mobilenet_v2", weights=None, num_classes=2).eval()
    plain.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x))
    assert meta["mean"] == imagenet["mean"] and meta["std"] == imagenet["std"] and meta["classes"] == ["low", "high"]
    assert meta["source"]["trained_here"] is False and len(meta["source"]["sha256"]) == 64 and meta["train"] is None
    # without image.mean / image.std: measured on the train split, as training does
    _, measured = import_checkpoint(tmp_path / "mine.pth", config, {}, images, labels)
    train = images[:8].reshape(-1, 3) / 255.0
    np.testing.assert_allclose(measured["mean"], train.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(measured["std"], train.std(axis=0), rtol=1e-6)


def regression_labels_of(n: int = 12) -> pd.DataFrame:
    """A regression's labels: its target values and their directions from the training mean."""
    labels = labels_of(["lower", "higher"], n)
    labels["target"] = np.linspace(8.0, 9.2, n)
    labels["class"] = pd.Categorical.from_codes(
        (labels["target"] > labels["target"][:8].mean()).astype(int), ["lower", "higher"]
    )
    return labels


def predicted_value(model: torch.nn.Module, meta: dict, x: torch.Tensor) -> torch.Tensor:
    """The regression's value read back from its direction logits: training mean + higher - lower."""
    logits = model(x)
    return meta["target_mean"] + logits[:, 1] - logits[:, 0]


def test_a_plain_regression_network_is_audited_through_its_directions(tmp_path: Path) -> None:
    torch.manual_seed(4)
    plain = tvm.get_model("mobilenet_v2", weights=None, num_classes=1).eval()
    torch.save(plain.state_dict(), tmp_path / "regressor.pth")  # one output: the target in its own units
    labels = regression_labels_of()
    model, meta = import_checkpoint(tmp_path / "regressor.pth", {"arch": ARCH, "stride": 2}, {}, images_of(),
                                    labels, regression=True)  # fmt: skip
    assert meta["task"] == "regression" and meta["classes"] == ["lower", "higher"]
    assert meta["target_mean"] == pytest.approx(labels["target"][:8].mean())
    assert meta["target_scale"] == pytest.approx(labels["target"][:8].std(ddof=0))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(predicted_value(model, meta, x), plain(x)[:, 0], rtol=1e-5, atol=1e-5)
        logits = model(x)
    torch.testing.assert_close(logits[:, 0], -logits[:, 1])
    with pytest.raises(ValueError, match="is a regression model, but target.task is classification"):
        save_checkpoint(model, meta, tmp_path / "model.pt")
        import_checkpoint(tmp_path / "model.pt", {"arch": ARCH, "stride": 2}, {}, images_of(), labels_of(["a", "b"]))


def test_a_regression_of_another_run_keeps_its_predictions_about_this_run_s_mean(tmp_path: Path) -> None:
    trained = build_model(ARCH, 2, regression=(8.9, 0.4)).eval()
    meta = {"arch": ARCH, "stride": 2, "classes": ["lower", "higher"], "mean": [0.5] * 3, "std": [0.25] * 3,
            "task": "regression", "target_mean": 8.9, "target_scale": 0.4}  # fmt: skip
    save_checkpoint(trained, meta, tmp_path / "model.pt")
    labels = regression_labels_of()  # another split: another training mean
    model, imported = import_checkpoint(tmp_path / "model.pt", {"arch": ARCH, "stride": 2}, {}, images_of(),
                                        labels, regression=True)  # fmt: skip
    assert imported["target_mean"] != pytest.approx(8.9) and imported["mean"] == [0.5] * 3
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(predicted_value(model, imported, x), predicted_value(trained, meta, x))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"classes": None}, r"model.classes: .* is a plain state_dict; list the classes of its outputs"),
        (
            {"classes": ["high", "low"]},
            r"the model's outputs are \['high', 'low'\], but the run keeps \['low', 'high'\]",
        ),
        (
            {"arch": "torchvision:mobilenet_v3_small"},
            r"has no tensor for 'body.1.block.0.0.weight' of torchvision:mobilenet_v3_small with 2 outputs",
        ),
    ],
)
def test_a_checkpoint_that_does_not_fit_the_run_is_named(tmp_path: Path, changes: dict, message: str) -> None:
    plain_state(2, tmp_path / "mine.pth")
    config = {"arch": ARCH, "stride": 2, "classes": ["low", "high"], **changes}
    with pytest.raises(ValueError, match=message):
        import_checkpoint(tmp_path / "mine.pth", config, {}, images_of(), labels_of(["low", "high"]))


def test_the_workflow_s_own_checkpoint_keeps_its_metadata(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("simple_cnn", 2)
    meta = {"arch": "simple_cnn", "stride": 2, "classes": ["low", "high"], "mean": [0.1] * 3, "std": [0.2] * 3,
            "device_name": "cpu: somewhere"}  # fmt: skip
    save_checkpoint(model, meta, tmp_path / "model.pt")
    config = {"arch": "simple_cnn", "stride": 2, "classes": None}
    imported, got = import_checkpoint(tmp_path / "model.pt", config, {}, images_of(), labels_of(["low", "high"]))
    assert got["mean"] == [0.1] * 3 and got["device_name"] == "not trained here (cpu: somewhere)"
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(imported.state_dict()[name], tensor)
    with pytest.raises(ValueError, match="is a simple_cnn checkpoint, but model.arch is resnet18"):
        import_checkpoint(
            tmp_path / "model.pt", {**config, "arch": "resnet18"}, {}, images_of(), labels_of(["low", "high"])
        )
