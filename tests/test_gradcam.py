"""Our all-class Grad-CAM against two independent implementations: Captum and pytorch-grad-cam."""

import copy
import gc
import weakref
from collections import OrderedDict

import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam
from pytorch_grad_cam import GradCAM as LibraryGradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch._dynamo.utils import counters

from saliency_audit.audit.gradcam import GradCAM, linear_tail
from saliency_audit.model.factory import Classifier, build_model, conv_block, find_module

CASES = [
    ("simple_cnn", "body.2", 3),
    ("simple_cnn", "body.1", 2),
    *(  # ResNet-18 against the references: 1 to 10 s each
        pytest.param("resnet18", layer, n, marks=pytest.mark.slow)
        for layer, n in (("body.layer4", 3), ("body.layer3", 2), ("body.layer3.0", 2))
    ),
]


def model_with_weights(arch: str, n_classes: int, trained: bool) -> torch.nn.Module:
    """Random init, or weights after a few optimiser steps (non-trivial BatchNorm statistics too)."""
    torch.manual_seed(0)
    model = build_model(arch, n_classes)
    if trained:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        model.train()
        for _ in range(3):
            x, y = torch.randn(8, 3, 32, 32), torch.randint(0, n_classes, (8,))
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@pytest.mark.parametrize("trained", [False, True], ids=["random", "trained"])
@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize(("arch", "layer", "n_classes"), CASES)
def test_equals_captum_and_pytorch_grad_cam(arch: str, layer: str, n_classes: int, batch: int, trained: bool) -> None:
    model = model_with_weights(arch, n_classes, trained)
    x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
    with GradCAM(model, layer) as gradcam:
        result = gradcam(x)
    with torch.no_grad():
        torch.testing.assert_close(result.logits, model(x))
        torch.testing.assert_close(result.activations, model.features(x))
    assert result.cams.shape[:2] == (batch, n_classes)
    assert all(p.requires_grad for p in model.parameters()), "parameters must be unfrozen afterwards"

    captum = LayerGradCam(model, find_module(model, layer))
    library = LibraryGradCAM(model=model, target_layers=[find_module(model, layer)])
    for c in range(n_classes):
        expected = captum.attribute(x, target=c, relu_attributions=True).detach()[:, 0]
        torch.testing.assert_close(result.cams[:, c], expected, rtol=1e-4, atol=1e-6)
        theirs = library(input_tensor=x, targets=[ClassifierOutputTarget(c)] * batch)
        ours = scale_cam_image(scale_cam_image(result.cams[:, c].numpy(), (32, 32)))
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    library.activations_and_grads.release()


def test_maps_are_raw_not_normalised() -> None:
    model = model_with_weights("simple_cnn", 2, trained=True)
    with GradCAM(model, "body.2") as gradcam:
        cams = gradcam(torch.randn(4, 3, 32, 32)).cams
    assert (cams >= 0).all()
    peaks = cams.flatten(2).amax(-1)
    assert not torch.allclose(peaks[peaks > 0], torch.ones(()))  # not min-max scaled to 1


def test_no_parameter_gradients_and_hook_released() -> None:
    model = model_with_weights("resnet18", 2, trained=False)
    layer = find_module(model, "body.layer3")
    with GradCAM(model, "body.layer3") as gradcam:
        result = gradcam(torch.randn(2, 3, 32, 32))
        assert not result.cams.requires_grad and not result.logits.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert len(layer._forward_hooks) == 0
    assert torch.is_grad_enabled()
    ref = weakref.ref(gradcam)
    del gradcam
    gc.collect()
    assert ref() is None


def test_bad_layers_are_explained() -> None:
    model = model_with_weights("simple_cnn", 2, trained=False)
    with pytest.raises(ValueError, match="must output a B x K x h x w feature map"):
        with GradCAM(model, "pool") as gradcam:
            gradcam(torch.randn(1, 3, 32, 32))
    with pytest.raises(RuntimeError, match="context manager"):
        GradCAM(model, "body.2")(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize(("arch", "layer"), [("simple_cnn", "body.2"), ("resnet18", "body.layer4")])
def test_linear_tail_shortcut_equals_the_autograd_path(arch: str, layer: str) -> None:
    model = model_with_weights(arch, 3, trained=True)
    x = torch.randn(4, 3, 32, 32)
    shortcut, autograd = GradCAM(model, layer), GradCAM(model, layer)
    assert shortcut.linear_tail
    autograd.linear_tail = False
    with shortcut:
        fast = shortcut(x)
    with autograd:
        slow = autograd(x)
    torch.testing.assert_close(fast.cams, slow.cams, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(fast.logits, slow.logits)
    torch.testing.assert_close(fast.activations, slow.activations)


def test_the_closed_form_follows_the_structure_not_the_names() -> None:
    """An unusually named last block still gets the closed form (and equals autograd); a two-layer head
    or an inner layer is differentiated, and equals Captum."""
    torch.manual_seed(1)
    body = torch.nn.Sequential(
        OrderedDict(stem=conv_block(3, 8, 2), final_features=torch.nn.Sequential(conv_block(8, 16, 2)))
    )
    renamed = Classifier(body, 16, 3, target_layer="body.final_features").eval()
    x = torch.randn(4, 3, 32, 32)
    for layer in ("body.final_features", "body.final_features.0", "body"):
        assert linear_tail(renamed, find_module(renamed, layer)), layer
    assert not linear_tail(renamed, find_module(renamed, "body.stem"))
    shortcut, autograd = GradCAM(renamed, "body.final_features"), GradCAM(renamed, "body.final_features")
    autograd.linear_tail = False
    with shortcut, autograd:
        torch.testing.assert_close(shortcut(x).cams, autograd(x).cams, rtol=1e-5, atol=1e-7)

    deep = Classifier(copy.deepcopy(body), 16, 3, target_layer="body.final_features").eval()
    deep.head = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    gradcam = GradCAM(deep, "body.final_features")
    assert not gradcam.linear_tail
    with gradcam:
        cams = gradcam(x).cams
    captum = LayerGradCam(deep, find_module(deep, "body.final_features"))
    for c in range(3):
        expected = captum.attribute(x, target=c, relu_attributions=True).detach()[:, 0]
        torch.testing.assert_close(cams[:, c], expected, rtol=1e-4, atol=1e-6)
    assert cams.abs().sum() > 0


@pytest.mark.slow
def test_compiled_pass_equals_eager_for_any_batch_size() -> None:
    model = model_with_weights("simple_cnn", 3, trained=True)
    torch._dynamo.reset()
    counters.clear()
    with GradCAM(model, "body.2") as eager, GradCAM(model, "body.2", compile=True) as fast:
        for batch in (5, 2):  # a short last batch reuses the dynamic-shape compile
            x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
            expected, got = eager(x), fast(x)
            torch.testing.assert_close(got.cams, expected.cams, rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(got.logits, expected.logits, rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(got.activations, expected.activations, rtol=1e-4, atol=1e-6)
    assert counters["stats"]["unique_graphs"] == 1
    assert all(p.requires_grad for p in model.parameters())


def test_compile_at_an_inner_layer_names_the_keys() -> None:
    model = model_with_weights("simple_cnn", 2, trained=False)
    with pytest.raises(ValueError, match=r"audit.compile works where only the pool and the linear head .*'body.1'"):
        GradCAM(model, "body.1", compile=True)
