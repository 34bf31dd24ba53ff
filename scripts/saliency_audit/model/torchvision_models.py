"""torchvision's convolutional classification networks as a ``Classifier`` (``model.arch: torchvision:<name>``).

Each network is built by ``torchvision.models.get_model(name, weights=None, num_classes=...)``
(nothing is downloaded) and split, module for module, into the ``Classifier``'s
``body`` (the convolutional stages, ending at the last one: the default Grad-CAM layer),
``pool`` (what turns the last feature map into the vector the classifier reads: the
penultimate features the audit keeps) and ``head`` (torchvision's classifier). The split
reuses torchvision's own modules, so the logits are exactly the network's own (a test
checks every family), and a state_dict saved from the plain torchvision network loads
through ``source_keys``, which maps its names to the split's.

Families: ResNet / ResNeXt / Wide ResNet, RegNet, ShuffleNetV2 (``fc`` heads); VGG, AlexNet,
DenseNet, EfficientNet (v1, v2), MobileNetV2 / V3, MNASNet, ConvNeXt (``features`` +
``classifier``). The others have no feature map at their end (ViT, Swin, MaxViT: tokens),
a convolutional classifier (SqueezeNet) or auxiliary heads (GoogLeNet, Inception v3): an error.
"""

import difflib
from collections import OrderedDict

from torch import nn

from saliency_audit.model.factory import Classifier

UNSUPPORTED = {
    "vit": "a vision transformer ends in tokens, not a feature map",
    "swin": "a Swin transformer ends in channels-last tokens, not a feature map",
    "maxvit": "MaxViT's classifier pools inside its head",
    "squeezenet": "SqueezeNet's classifier is a convolution over the feature map",
    "googlenet": "GoogLeNet has auxiliary heads and transforms its input",
    "inception": "Inception v3 has an auxiliary head and transforms its input",
}


def classification_names() -> list[str]:
    """Every classification builder of ``torchvision.models`` (not detection, segmentation, video)."""
    import torchvision.models as tvm  # noqa: PLC0415  (a second to import: only these runs pay it)

    return sorted(tvm.list_models(module=tvm))


def _global_pool() -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _split(name: str, net: nn.Module) -> tuple[nn.Sequential, nn.Module, nn.Module, str]:
    """(body, pool, head, target layer) of a torchvision network, its own modules."""
    children = OrderedDict(net.named_children())
    if "fc" in children:  # ResNet, ResNeXt, Wide ResNet, RegNet, ShuffleNetV2: stages, (avgpool,) fc
        stages = OrderedDict((k, m) for k, m in children.items() if k not in ("avgpool", "fc"))
        pool = nn.Sequential(children["avgpool"], nn.Flatten()) if "avgpool" in children else _global_pool()
        body = nn.Sequential(stages)
        return body, pool, children["fc"], f"body.{next(reversed(stages))}"
    if "classifier" in children and ("features" in children or "layers" in children):
        features = children.get("features", children.get("layers"))
        assert isinstance(features, nn.Sequential)  # every family here keeps its stages in one
        head = children["classifier"]
        if name.startswith("densenet"):  # forward: features, ReLU, global pool, flatten, classifier
            body = nn.Sequential(OrderedDict(features=features, relu=nn.ReLU()))
            return body, _global_pool(), head, "body.relu"
        target = f"body.{len(features) - 1}"
        if name.startswith("convnext"):  # classifier: LayerNorm2d, Flatten, Linear; the first two act on the pool
            assert isinstance(head, nn.Sequential)
            pool = nn.Sequential(children["avgpool"], head[0], head[1])
            return features, pool, head[2], target
        if "avgpool" in children:  # VGG, AlexNet (a 7 x 7 or 6 x 6 pool), EfficientNet, MobileNetV3
            return features, nn.Sequential(children["avgpool"], nn.Flatten()), head, target
        return features, _global_pool(), head, target  # MobileNetV2, MNASNet: a mean over the map
    raise ValueError(f"model.arch 'torchvision:{name}': no convolutional body and classifier found to split")


def source_keys(net: nn.Module, model: nn.Module) -> dict[str, str]:
    """The state_dict names of ``net`` -> those of ``model``, which holds the same tensors under other names."""
    own = {id(tensor): key for key, tensor in model.state_dict(keep_vars=True).items()}
    return {key: own[id(tensor)] for key, tensor in net.state_dict(keep_vars=True).items() if id(tensor) in own}


def torchvision_classifier(name: str, n_classes: int) -> Classifier:
    """``torchvision.models.<name>`` with ``n_classes`` outputs and no pretrained weights, as a ``Classifier``
    whose ``source_keys`` map the plain network's state_dict names to its own."""
    for prefix, reason in UNSUPPORTED.items():
        if name.startswith(prefix):
            raise ValueError(f"model.arch 'torchvision:{name}' cannot be audited: {reason}")
    import torchvision.models as tvm  # noqa: PLC0415

    names = classification_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=6, cutoff=0.5) or names[:8]
        raise ValueError(f"model.arch 'torchvision:{name}' is not a torchvision classification model; e.g. {close}")
    net = tvm.get_model(name, weights=None, num_classes=n_classes)
    body, pool, head, target = _split(name, net)
    model = Classifier(body, _in_features(head), n_classes, target, pool=pool, head=head)
    model.source_keys = source_keys(net, model)
    return model


def _in_features(head: nn.Module) -> int:
    """The width of the vector a classifier head reads: its first linear layer's input."""
    for module in head.modules():
        if isinstance(module, nn.Linear):
            return int(module.in_features)
    raise ValueError(f"no linear layer in the classifier {head}")
