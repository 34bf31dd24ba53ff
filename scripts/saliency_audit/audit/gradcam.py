"""The one Grad-CAM implementation: logits, penultimate activations and every class's map in one pass.

The network up to the target layer runs without autograd. Its output A is
detached and made a leaf, and only the rest of the network (after the target
layer) is recorded and differentiated: one forward of that part, then the
gradient of every class logit with respect to A at once (a batched vector-
Jacobian product over class one-hots). No parameter gradients are formed.

Grad-CAM (Selvaraju et al. 2017) of class c is ReLU(sum_k alpha_ck A_k) with
alpha_ck the spatial mean of d y_c / d A_k. Maps are returned raw, at the
layer's resolution and scale, so their total energy can be compared.

When all that follows the target layer is a global average pool and one
linear layer (the model's last block, the default, of every architecture
here), d y_c / d A_k is the constant W_ck / (h w) and Grad-CAM reduces to CAM
(Zhou et al. 2016). The gradients are then known without autograd and the
pass costs one forward. This is decided from the model's structure
(``linear_tail``), never from the layer's name; any other head is
differentiated.
"""

from dataclasses import dataclass

import torch
from torch import nn

from saliency_audit.model.factory import Classifier, DirectionHead, compiled, find_module


@dataclass
class AuditBatch:
    """What one pass over a batch yields; every tensor stays on the model's device."""

    logits: torch.Tensor  # B x C
    activations: torch.Tensor  # B x F, the penultimate vector
    cams: torch.Tensor  # B x C x h x w, raw Grad-CAM of every class


def _ends_the_body(body: nn.Module, module: nn.Module) -> bool:
    """Whether ``module``'s output is the body's output: it is the body or, through nested
    ``nn.Sequential`` containers (which run their children in order), the last of them."""
    node = body
    while node is not module:
        if not isinstance(node, nn.Sequential) or len(node) == 0:
            return False
        node = node[-1]
    return True


def _is_global_average_pool(pool: nn.Module) -> bool:
    """An adaptive average pool to 1 x 1, then nothing but flattening."""
    layers = list(pool) if isinstance(pool, nn.Sequential) else [pool]
    if not layers or not isinstance(layers[0], nn.AdaptiveAvgPool2d):
        return False
    if layers[0].output_size not in (1, (1, 1)):
        return False
    return all(isinstance(layer, nn.Flatten) for layer in layers[1:])


def head_linear(head: nn.Module) -> nn.Linear | None:
    """The head's one linear layer when the head is that layer alone or after dropouts (the identity in
    the audit's eval mode, as in torchvision's EfficientNets), or a regression's ``DirectionHead`` over
    such a head, folded into one; None for any other head."""
    if isinstance(head, DirectionHead):
        inner = head_linear(head.value)
        return None if inner is None else head.folded(inner)
    if isinstance(head, nn.Linear):
        return head
    layers = list(head) if isinstance(head, nn.Sequential) else []
    if layers and isinstance(layers[-1], nn.Linear) and all(isinstance(m, nn.Dropout) for m in layers[:-1]):
        return layers[-1]
    return None


def linear_tail(model: Classifier, module: nn.Module) -> bool:
    """Whether only a global average pool and one linear layer follow ``module``, so that Grad-CAM
    has the closed form W_ck / (h w) (CAM); decided from the modules, not from their names."""
    return (
        _ends_the_body(model.body, module)
        and _is_global_average_pool(model.pool)
        and head_linear(model.head) is not None
    )


class GradCAM:
    """All-class Grad-CAM at ``layer`` (a dotted module name) of a ``Classifier``.

    Use as a context manager so the forward hook is removed afterwards; the
    model's parameters are frozen for the duration (nothing here trains).
    With ``compile``, the body runs through ``torch.compile``: only at the last
    block, where no hook cuts the graph.
    """

    def __init__(self, model: Classifier, layer: str, compile: bool = False) -> None:
        self.model = model
        self.layer = layer
        self.module = find_module(model, layer)
        self.linear_tail = linear_tail(model, self.module)  # only pool and one linear layer follow
        if compile and not self.linear_tail:
            raise ValueError(
                f"audit.compile works where only the pool and the linear head follow the layer (audit.layer: "
                f"auto); with audit.layer {layer!r} set audit.compile: false"
            )
        self.body = compiled(model.body) if compile else model.body
        self._activation: torch.Tensor | None = None
        self._handle: torch.utils.hooks.RemovableHandle | None = None
        self._frozen: list[nn.Parameter] = []
        self._entered = False

    def __enter__(self) -> "GradCAM":
        self._handle = None if self.linear_tail else self.module.register_forward_hook(self._make_leaf)
        self._entered = True
        self._frozen = [p for p in self.model.parameters() if p.requires_grad]
        for p in self._frozen:
            p.requires_grad_(False)
        return self

    def __exit__(self, *exc: object) -> None:
        self._entered = False
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        for p in self._frozen:
            p.requires_grad_(True)
        self._frozen = []
        self._activation = None

    def _make_leaf(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        """Cut the graph at the target layer: what follows is recorded from a fresh leaf.

        The layer's successors get a copy, so an in-place operation after it (a
        ResNet's ``out += identity``) cannot touch the activation itself.
        """
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise ValueError(f"audit.layer {self.layer!r} must output a B x K x h x w feature map")
        leaf = output.detach().requires_grad_(True)
        self._activation = leaf
        torch.set_grad_enabled(True)  # restored when the no_grad() block in __call__ ends
        return leaf.clone()

    def __call__(self, x: torch.Tensor) -> AuditBatch:
        if not self._entered:
            raise RuntimeError("use GradCAM as a context manager: with GradCAM(model, layer) as cam: ...")
        self.model.eval()
        if self.linear_tail:
            return self._class_activation_maps(x)
        with torch.no_grad():
            activations = self.model.features(x)
            logits = self.model.head(activations)
            a = self._activation
            if a is None:
                raise ValueError(f"audit.layer {self.layer!r} is not on the path from the input to the logits")
            n_classes = logits.shape[1]
            one_hots = torch.eye(n_classes, device=logits.device, dtype=logits.dtype)
            one_hots = one_hots[:, None, :].expand(n_classes, logits.shape[0], n_classes)
            (grads,) = torch.autograd.grad(logits, a, grad_outputs=one_hots, is_grads_batched=True)
        self._activation = None
        with torch.no_grad():
            weights = grads.mean(dim=(-2, -1))  # C x B x K
            cams = torch.relu(torch.einsum("cbk,bkhw->bchw", weights, a.detach()))
        return AuditBatch(logits.detach(), activations.detach(), cams)

    def _class_activation_maps(self, x: torch.Tensor) -> AuditBatch:
        """Grad-CAM with the gradients of pool + linear head written out: W_ck / (h w)."""
        with torch.inference_mode():
            a = self.body(x)
            activations = self.model.pool(a)
            logits = self.model.head(activations)
            linear = head_linear(self.model.head)
            assert linear is not None  # checked when linear_tail was set
            weights = linear.weight / (a.shape[-2] * a.shape[-1])  # C x K
            cams = torch.relu(torch.einsum("ck,bkhw->bchw", weights.to(a.dtype), a))
        return AuditBatch(logits, activations, cams)
