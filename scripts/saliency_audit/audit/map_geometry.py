"""The one map-to-pixel placement: where each Grad-CAM cell looks in the packed image.

Pixel centres sit at the integer coordinates of the packed image. Cell (i, j)
of a map is centred on the centre of its receptive field,
``origin + (i * stride_y, j * stride_x)``, derived from the kernels, strides and
paddings of the layers up to the Grad-CAM layer. For a chain of 3 x 3 convolutions
with padding 1 the origin is pixel 0, not the middle of the first ``stride`` block
where an image resize (``align_corners=False``) would put it: a resize draws every
cell (stride - 1) / 2 px down and right of where it looks.

``place`` interpolates bilinearly between the cell centres; beyond the outermost
centres (the last ``stride - 1`` rows and columns of a 3 x 3-conv network) each
pixel takes the value of the nearest centre line, so nothing is extrapolated and
a map stays non-negative. ``pool`` is its adjoint: it takes a pixel mask to the
cells with the same weights, so the object's own map (the reference of the
localisation statistics) is seen through exactly the placement the maps get.
"""

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

GEOMETRY_LAYERS = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


@dataclass(frozen=True)
class MapGeometry:
    """Receptive-field centre of cell (0, 0) and the spacing of the cells, in packed-image pixels."""

    origin: tuple[float, float]
    stride: tuple[float, float]

    def as_dict(self) -> dict[str, list[float]]:
        return {"origin": list(self.origin), "stride": list(self.stride)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "MapGeometry":
        return cls(tuple(map(float, values["origin"])), tuple(map(float, values["stride"])))  # type: ignore[arg-type]

    def centres(self, map_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (rows, columns) of the cell centres."""
        return tuple(o + s * np.arange(n) for o, s, n in zip(self.origin, self.stride, map_shape))  # type: ignore[return-value]


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[-1]))


def _layer_step(module: nn.Module) -> tuple[tuple[float, float], tuple[int, int]]:
    """(offset of output cell 0's centre in input cells, stride) of one conv or pool layer."""
    # nn.Module types its attributes Tensor | Module; a conv or pool layer holds ints, tuples or a padding mode
    kernel = _pair(cast(int | tuple[int, ...], module.kernel_size))
    stride = _pair(cast(int | tuple[int, ...], module.stride))
    dilation = _pair(getattr(module, "dilation", 1))
    padding = cast(str | int | tuple[int, ...], module.padding)
    if padding == "valid":
        padding = 0
    if padding == "same":
        padding = tuple((k - 1) * d // 2 for k, d in zip(kernel, dilation))
    pads = _pair(cast(int | tuple[int, ...], padding))  # "valid" and "same" were replaced above
    offset = tuple((k - 1) * d / 2 - p for k, d, p in zip(kernel, dilation, pads))
    return offset, stride  # type: ignore[return-value]


def derive_geometry(model: nn.Module, layer: nn.Module, size: int) -> MapGeometry:
    """The geometry of ``layer``'s output on size x size inputs, from one forward of a blank image.

    Every conv and pool layer that runs before ``layer``'s output is ready is recorded
    with its input's spatial shape; a layer extends the chain when its input has the
    chain's current shape (a parallel branch on an earlier, larger map, like a
    ResNet's projection shortcut after its first conv, does not), and the chain
    must end at ``layer``'s output shape.
    """
    calls: list[tuple[nn.Module, tuple[int, ...], tuple[int, ...]]] = []
    done: list[tuple[int, ...]] = []

    def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if not done:
            calls.append((module, tuple(inputs[0].shape[-2:]), tuple(output.shape[-2:])))

    def finish(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if not done:
            done.append(tuple(output.shape[-2:]))

    handles = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, GEOMETRY_LAYERS)]
    handles.append(layer.register_forward_hook(finish))
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)  # its bands
            model(torch.zeros(1, 3 if first is None else first.in_channels, size, size, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    if not done:
        raise ValueError("the Grad-CAM layer is not on the path from the input to the logits")
    shape: tuple[int, ...]
    shape, origin, stride = (size, size), [0.0, 0.0], [1.0, 1.0]
    for module, in_shape, out_shape in calls:
        if in_shape != shape:
            continue
        offset, step = _layer_step(module)
        origin = [o + s * d for o, s, d in zip(origin, stride, offset)]
        stride = [s * k for s, k in zip(stride, step)]
        shape = out_shape
    if shape != done[0]:
        raise ValueError(
            f"cannot follow the map geometry from the input to the Grad-CAM layer's {done[0]} map "
            f"through the conv and pool layers (the chain ends at {shape})"
        )
    return MapGeometry((origin[0], origin[1]), (stride[0], stride[1]))


def placement_matrix(pixels: int, cells: int, origin: float, stride: float) -> torch.Tensor:
    """pixels x cells weights of the bilinear interpolation between cell centres along one axis.

    Row ``p`` holds the weights of pixel ``p``: two neighbouring cells between centres,
    the nearest cell alone beyond the outermost ones. Every row sums to 1.
    """
    position = ((torch.arange(pixels, dtype=torch.float64) - origin) / stride).clamp(0, cells - 1)
    low = position.floor().clamp(max=max(cells - 2, 0)).long()
    frac = position - low
    weights = torch.zeros(pixels, cells, dtype=torch.float64)
    rows = torch.arange(pixels)
    weights[rows, low] = 1 - frac
    if cells > 1:
        weights[rows, low + 1] += frac
    return weights.float()


def _matrices(geometry: MapGeometry, map_shape: tuple[int, ...], size: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(
        placement_matrix(pixels, cells, origin, stride)
        for pixels, cells, origin, stride in zip(size, map_shape, geometry.origin, geometry.stride)
    )


def place(maps: np.ndarray | torch.Tensor, geometry: MapGeometry, size: tuple[int, int]) -> torch.Tensor:
    """B x h x w maps (ReLU'd first) as B x H x W pixel maps, each cell drawn at its receptive-field centre."""
    maps = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps, dtype=torch.float32)
    rows, cols = _matrices(geometry, tuple(maps.shape[-2:]), size)
    return rows @ maps.clamp(min=0) @ cols.T


def pool(masks: np.ndarray | torch.Tensor, geometry: MapGeometry, map_shape: tuple[int, ...]) -> torch.Tensor:
    """B x H x W pixel masks as B x h x w cell values: each cell's weighted share of the object,
    with the weights ``place`` gives that cell (the adjoint of the placement, normalised)."""
    masks = torch.as_tensor(np.asarray(masks), dtype=torch.float32)
    rows, cols = _matrices(geometry, map_shape, tuple(masks.shape[-2:]))
    mass = rows.T @ masks @ cols
    return mass / (rows.sum(dim=0)[:, None] * cols.sum(dim=0)[None, :])
