"""torchvision's classification networks as the workflow's ``Classifier`` (``model.arch: torchvision:<name>``):
the same logits as the network's own forward, the penultimate vector its classifier reads, and Grad-CAM at the
last convolutional stage equal to Captum's ``LayerGradCam``."""

import pytest
import torch
import torchvision.models as tvm
from captum.attr import LayerGradCam

from saliency_audit.audit.gradcam import GradCAM, linear_tail
from saliency_audit.audit.map_geometry import derive_geometry
from saliency_audit.model.factory import build_model, find_module

SIZE = 64  # px: a 2 x 2 map at the last stage (stride 32), 1 x 1 for AlexNet
FAMILIES = [
    "resnet18",
    "regnet_x_400mf",
    "shufflenet_v2_x0_5",
    "densenet121",
    "efficientnet_b0",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mnasnet0_5",
    *(pytest.param(name, marks=pytest.mark.slow) for name in ("resnet50", "convnext_tiny", "vgg11", "alexnet")),
]


def plain_and_ours(name: str, n_classes: int = 3) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The plain torchvision network (seeded, random weights) and ours with its weights, loaded by name."""
    torch.manual_seed(0)
    plain = tvm.get_model(name, weights=None, num_classes=n_classes).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that a wrong buffer mapping shows
        for module in plain.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    ours = build_model(f"torchvision:{name}", n_classes)
    state = plain.state_dict()
    ours.load_state_dict({ours.source_keys[key]: value for key, value in state.items()})
    assert len(ours.source_keys) == len(state) == len(ours.state_dict())
    return plain, ours.eval()


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "efficientnet_b0", "mobilenet_v3_large"])
@pytest.mark.parametrize("channels", [2, 5])
def test_other_numbers_of_bands_change_the_first_convolution_only(name: str, channels: int) -> None:
    rgb, bands = build_model(f"torchvision:{name}", 3), build_model(f"torchvision:{name}", 3, channels=channels)
    shapes = {key: tuple(value.shape) for key, value in rgb.state_dict().items()}
    changed = {key for key, value in bands.state_dict().items() if tuple(value.shape) != shapes[key]}
    assert bands.state_dict().keys() == shapes.keys() and len(changed) == 1
    (first,) = changed
    assert shapes[first][1] == 3 and bands.state_dict()[first].shape[1] == channels
    x = torch.randn(2, channels, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    bands.eval()
    with GradCAM(bands, bands.target_layer) as gradcam:
        result = gradcam(x)
    captum = LayerGradCam(bands, find_module(bands, bands.target_layer))
    expected = captum.attribute(x, target=1, relu_attributions=True).detach()[:, 0]
    torch.testing.assert_close(result.cams[:, 1], expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", FAMILIES)
def test_the_split_network_is_the_plain_one_and_grad_cam_equals_captum(name: str) -> None:
    plain, ours = plain_and_ours(name)
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    layer = find_module(ours, ours.target_layer)
    with GradCAM(ours, ours.target_layer) as gradcam:
        result = gradcam(x)
    with torch.no_grad():
        torch.testing.assert_close(result.logits, plain(x), rtol=1e-4, atol=1e-5)
    assert result.activations.shape == (2, ours.n_features)
    assert result.cams.shape[:2] == (2, 3) and result.cams.shape[2:] == result.cams.shape[2:][:1] * 2
    # the reference differentiates the whole network with autograd, once per class (the logits are the
    # plain network's, checked above)
    captum = LayerGradCam(ours, layer)
    for c in range(3):
        expected = captum.attribute(x, target=c, relu_attributions=True).detach()[:, 0]
        torch.testing.assert_close(result.cams[:, c], expected, rtol=1e-4, atol=1e-6)
    assert list(derive_geometry(ours, layer, SIZE).stride) == [32.0, 32.0]


def test_the_closed_form_serves_a_dropout_then_linear_head() -> None:
    _, ours = plain_and_ours("efficientnet_b0")
    assert linear_tail(ours, find_module(ours, ours.target_layer))
    _, convnext = plain_and_ours("mobilenet_v3_large")  # an MLP head: differentiated
    assert not linear_tail(convnext, find_module(convnext, convnext.target_layer))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("vit_b_16", "cannot be audited: a vision transformer ends in tokens"),
        ("squeezenet1_0", "cannot be audited: SqueezeNet's classifier is a convolution"),
        ("resnet19", r"'torchvision:resnet19' is not a torchvision classification model; e\.g\. \[.*'resnet18'"),
    ],
)
def test_networks_without_a_feature_map_or_unknown_names_are_refused(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model(f"torchvision:{name}", 2)
