"""The one model factory: the seed's three-block CNN, a ResNet-18 for small cutouts, and torchvision's
classification networks (``torchvision_models``).

Both are a ``Classifier``: a convolutional ``body``, a ``pool`` that turns its
last feature map into the penultimate vector, and a linear ``head``. Every
later stage relies on that shape: the audit reads the penultimate vector from
``features`` and takes Grad-CAM at ``target_layer`` (a dotted module name).
"""

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn

from saliency_audit.model.architectures import ARCHS, FEATURE_WIDTHS, TORCHVISION


class Classifier(nn.Module):
    """body -> pool -> head, with its default Grad-CAM layer. The pool is a global average pool and the
    head one linear layer unless given (a torchvision network brings its own: a LayerNorm after the
    pool, a dropout or a small MLP in the head)."""

    def __init__(
        self,
        body: nn.Sequential,
        n_features: int,
        n_classes: int,
        target_layer: str,
        pool: nn.Module | None = None,
        head: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.body = body
        self.pool = pool if pool is not None else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = head if head is not None else nn.Linear(n_features, n_classes)
        self.target_layer = target_layer
        self.n_features, self.n_classes = n_features, n_classes
        self.source_keys: dict[str, str] = {}  # a torchvision network's state_dict names -> these

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate vector: what the head sees, the activations the audit keeps."""
        return self.pool(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class DirectionHead(nn.Module):
    """A regression head read as the logits of its two directions (``lower``, ``higher``).

    ``value`` predicts the target standardised by the training split (z); the logits are
    (-d / 2, d / 2) with d = ``target_scale`` z, the prediction's distance from the training mean
    in the target's units. So the margin of the predicted direction is |prediction - mean|, the
    Grad-CAM of ``higher`` is that of the prediction (its evidence pushing it up) and of ``lower``
    that of its negative, and every stage written for classes reads a regression unchanged.
    """

    target_mean: torch.Tensor
    target_scale: torch.Tensor

    def __init__(self, value: nn.Module, mean: float, scale: float) -> None:
        super().__init__()
        self.value = value
        self.register_buffer("target_mean", torch.tensor(float(mean)))
        self.register_buffer("target_scale", torch.tensor(float(scale)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        deviation = self.value(features)[:, :1] * self.target_scale
        return torch.cat([-deviation, deviation], dim=1) / 2

    def folded(self, linear: nn.Linear) -> nn.Linear:
        """The one linear layer equal to this head when ``value`` is ``linear`` (after dropouts)."""
        half = self.target_scale.to(linear.weight.dtype) / 2
        out = nn.Linear(linear.in_features, 2, bias=linear.bias is not None).to(linear.weight.device)
        with torch.no_grad():
            out.weight.copy_(torch.cat([-linear.weight[:1], linear.weight[:1]]) * half)
            if linear.bias is not None and out.bias is not None:
                out.bias.copy_(torch.cat([-linear.bias[:1], linear.bias[:1]]) * half)
        return out


def restandardised(value: nn.Module, offset: float, factor: float, mean: float, scale: float) -> DirectionHead:
    """The ``DirectionHead`` about ``mean`` and ``scale`` of a value head that predicts the target as
    ``offset + factor * value(features)`` (a plain network's one output: 0, 1; another run's
    ``DirectionHead``: its own mean and scale). Its last linear layer is rescaled in place, so the
    prediction stays the same number and Grad-CAM's closed form still applies."""
    with_weights = [m for m in value.modules() if any(True for _ in m.parameters(recurse=False))]
    linear = with_weights[-1] if with_weights else None
    if not isinstance(linear, nn.Linear) or linear.bias is None or linear.out_features != 1:
        raise ValueError("a regression's value head must end in one linear layer with a bias and one output")
    with torch.no_grad():
        linear.weight.mul_(factor / scale)
        linear.bias.mul_(factor).add_(offset - mean).div_(scale)
    return DirectionHead(value, mean, scale)


def conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """3x3 conv without bias, BatchNorm, ReLU: the seed's (fastai) ConvLayer."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def simple_cnn(n_classes: int, stride: int = 2) -> Classifier:
    """The seed's network: blocks of 32, 64, 128 channels, pooled, one linear layer."""
    channels = (3, 32, 64, FEATURE_WIDTHS["simple_cnn"])
    body = nn.Sequential(*(conv_block(a, b, stride) for a, b in zip(channels, channels[1:])))
    return Classifier(body, channels[-1], n_classes, target_layer="body.2")


class BasicBlock(nn.Module):
    """ResNet's two 3x3 convs with an identity (or 1x1 projection) shortcut; names as torchvision's."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + shortcut)


def resnet18_cutout(n_classes: int) -> Classifier:
    """ResNet-18 (torchvision's layout and initialisation, untrained) with a stem for small cutouts.

    The ImageNet stem (7x7 stride-2 conv and max pool) divides a 64 px cutout by
    4 before the first block and leaves a 2x2 map after ``layer4``. A 3x3
    stride-2 conv without the pool leaves 4x4 (``layer3``: 8x8) at about a third
    of the ImageNet stem's CPU speed; a stride-1 stem would be 5x slower again.
    Built here rather than imported, because importing torchvision costs every
    job over a second.
    """
    layers, c_in = OrderedDict(), 64
    for k, (c_out, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
        layers[f"layer{k}"] = nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1))
        c_in = c_out
    body = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False),
            bn1=nn.BatchNorm2d(64),
            relu=nn.ReLU(inplace=True),
            **layers,
        )
    )
    for module in body.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return Classifier(body, 512, n_classes, target_layer="body.layer4")


def build_model(
    arch: str,
    n_classes: int,
    stride: int = 2,
    regression: tuple[float, float] | None = None,
    channels: int = 3,
) -> Classifier:
    """Build an untrained model by name (``model.arch`` in the config): ``simple_cnn``, ``resnet18`` or
    ``torchvision:<name>``, taking images of ``channels`` bands (``image.channels``). With
    ``regression`` (the training target's mean and standard deviation), one output read through a
    ``DirectionHead`` as the two direction classes."""
    if regression is not None:
        model = build_model(arch, 1, stride, channels=channels)
        model.head = DirectionHead(model.head, *regression)
        model.n_classes = 2
        return model
    if arch == "simple_cnn":
        model = simple_cnn(n_classes, stride)
    elif arch == "resnet18":
        model = resnet18_cutout(n_classes)
    elif arch.startswith(TORCHVISION):
        from saliency_audit.model.torchvision_models import torchvision_classifier  # noqa: PLC0415  (a second to import)

        model = torchvision_classifier(arch.removeprefix(TORCHVISION), n_classes)
    else:
        raise ValueError(f"model.arch {arch!r} is not one of {ARCHS} or {TORCHVISION}<name>")
    return model if channels == 3 else with_input_channels(model, channels)


def with_input_channels(model: Classifier, channels: int) -> Classifier:
    """``model`` with its first convolution taking ``channels`` bands: the same layer (kernel, stride,
    padding, groups of one) with new weights, initialised as PyTorch initialises a Conv2d. Every
    architecture's input passes through its first Conv2d in module order first."""
    name, first = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    if first.groups != 1:
        raise ValueError(f"the first convolution of {type(model).__name__} ({name}) is grouped; it cannot take bands")
    pair = cast(Callable[[Any], tuple[int, int]], tuple)  # a built Conv2d holds its sizes as pairs
    replacement = nn.Conv2d(
        channels, first.out_channels, pair(first.kernel_size), pair(first.stride),
        first.padding if isinstance(first.padding, str) else pair(first.padding), pair(first.dilation),
        bias=first.bias is not None, padding_mode=first.padding_mode,
    )  # fmt: skip
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent), leaf, replacement)
    return model


def compiled(module: nn.Module) -> nn.Module:
    """``torch.compile`` with a dynamic batch dimension: one compile per mode (train, eval) serves
    every batch, the short last one included.

    Opt-in (``train.compile``, ``audit.compile``) because every job compiles again: on a 2-core
    CPU it pays off past about 10k images per job for ResNet-18 and past 100k for simple_cnn
    (benchmarks/compile.py). Parameters stay shared with ``module``, which is
    what gets saved (the compiled wrapper's state_dict names carry a prefix).
    """
    return cast(nn.Module, torch.compile(module, dynamic=True))  # an OptimizedModule, typed as a plain callable


def layer_problem(arch: str, stride: int, layer: str, size: int) -> str | None:
    """Why ``layer`` cannot be the Grad-CAM layer of an untrained ``arch`` model on size x size
    images (not a module, not on the path to the logits, no B x K x h x w output), or None."""
    model = build_model(arch, 2, stride).eval()
    try:
        module = find_module(model, layer)
    except ValueError as error:
        return str(error)
    shapes = []
    handle = module.register_forward_hook(lambda _module, _inputs, output: shapes.append(tuple(output.shape)))
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    finally:
        handle.remove()
    if not shapes:
        return f"audit.layer {layer!r} is not on the path from the input to the logits"
    if len(shapes[-1]) != 4:
        return f"audit.layer {layer!r} outputs shape {shapes[-1]}, not a B x K x h x w feature map"
    return None


def find_module(model: nn.Module, name: str) -> nn.Module:
    """A submodule by dotted name, with the valid names in the error."""
    modules = dict(model.named_modules())
    if name not in modules:
        convs = [n for n, m in modules.items() if isinstance(m, nn.Sequential | nn.Conv2d) and n]
        raise ValueError(f"audit.layer {name!r} is not a module of this model; some choices: {convs[-8:]}")
    return modules[name]
