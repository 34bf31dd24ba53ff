"""The one model factory: the seed's three-block CNN and a ResNet-18 for small cutouts.

Both are a ``Classifier``: a convolutional ``body``, a ``pool`` that turns its
last feature map into the penultimate vector, and a linear ``head``. Every
later stage relies on that shape: the audit reads the penultimate vector from
``features`` and takes Grad-CAM at ``target_layer`` (a dotted module name).
"""

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models import resnet18

ARCHS = ("simple_cnn", "resnet18")


class Classifier(nn.Module):
    """body -> global average pool -> linear head, with its default Grad-CAM layer."""

    def __init__(self, body: nn.Sequential, n_features: int, n_classes: int, target_layer: str) -> None:
        super().__init__()
        self.body = body
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(n_features, n_classes)
        self.target_layer = target_layer

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate vector: what the head sees, the activations the audit keeps."""
        return self.pool(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """3x3 conv without bias, BatchNorm, ReLU: the seed's (fastai) ConvLayer."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def simple_cnn(n_classes: int, stride: int = 2) -> Classifier:
    """The seed's network: blocks of 32, 64, 128 channels, pooled, one linear layer."""
    channels = (3, 32, 64, 128)
    body = nn.Sequential(*(conv_block(a, b, stride) for a, b in zip(channels, channels[1:])))
    return Classifier(body, channels[-1], n_classes, target_layer="body.2")


def resnet18_cutout(n_classes: int) -> Classifier:
    """torchvision's ResNet-18, untrained, with a stem for small cutouts.

    The ImageNet stem (7x7 stride-2 conv and max pool) divides a 64 px cutout by
    4 before the first block and leaves a 2x2 map after ``layer4``. A 3x3
    stride-2 conv without the pool leaves 4x4 (``layer3``: 8x8) at about a third
    of the ImageNet stem's CPU speed; a stride-1 stem would be 5x slower again.
    """
    net = resnet18(weights=None, num_classes=n_classes)
    body = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False),
            bn1=net.bn1,
            relu=net.relu,
            layer1=net.layer1,
            layer2=net.layer2,
            layer3=net.layer3,
            layer4=net.layer4,
        )
    )
    nn.init.kaiming_normal_(body.conv1.weight, mode="fan_out", nonlinearity="relu")
    return Classifier(body, net.fc.in_features, n_classes, target_layer="body.layer4")


def build_model(arch: str, n_classes: int, stride: int = 2) -> Classifier:
    """Build an untrained model by name (``model.arch`` in the config)."""
    if arch == "simple_cnn":
        return simple_cnn(n_classes, stride)
    if arch == "resnet18":
        return resnet18_cutout(n_classes)
    raise ValueError(f"model.arch {arch!r} is not one of {ARCHS}")


def find_module(model: nn.Module, name: str) -> nn.Module:
    """A submodule by dotted name, with the valid names in the error."""
    modules = dict(model.named_modules())
    if name not in modules:
        convs = [n for n, m in modules.items() if isinstance(m, nn.Sequential | nn.Conv2d) and n]
        raise ValueError(f"audit.layer {name!r} is not a module of this model; some choices: {convs[-8:]}")
    return modules[name]
