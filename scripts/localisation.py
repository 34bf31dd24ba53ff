"""Localisation statistics of Grad-CAM maps against object regions, a batch at a time.

The metrics follow Quantus' localisation family (relevance mass accuracy,
pointing game, relevance rank accuracy) plus the peak offset, the spread of
the map and its raw magnitude. Grad-CAM maps are coarse (8 x 8 for a 64 px
image), and once upsampled they blur across the object's border: even a map
that sits only on the galaxy loses part of its mass outside a tight mask. So
each map is also compared with a *reference*: the energy that a map made of
the object itself keeps after the same down- and up-sampling.
``relative_energy`` = energy_in_object / reference is what the
``background_focused`` flag reads, so the flag means the same at every map
resolution and object size.

Every function takes a batch (B x h x w maps, B x H x W boolean masks) and
works on whole arrays, with no Python loop over images or pixels.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Why a statistic could not be computed: its own state, never a silent NaN.
STATE_OK = "ok"
STATE_EMPTY_MAP = "empty_map"  # the ReLU'd map is zero everywhere: no positive evidence at the layer
STATE_EMPTY_OBJECT = "empty_object"  # the object region has no pixel

METRICS = (
    "energy_in_object",
    "relative_energy",
    "pointing_hit",
    "rank_accuracy",
    "peak_offset",
    "entropy",
    "cam_total",
)


@dataclass
class Localisation:
    """One value per map; NaN (with ``state`` saying why) where a statistic is undefined."""

    energy_in_object: np.ndarray  # CAM mass inside the object / total mass, in [0, 1]
    reference_energy: np.ndarray  # energy_in_object of the object's own map at the CAM's resolution
    relative_energy: np.ndarray  # energy_in_object / reference_energy, clipped to [0, 1]
    pointing_hit: np.ndarray  # the map's peak lies inside the object (float 0/1, NaN if undefined)
    rank_accuracy: np.ndarray  # share of the |object| highest pixels that lie inside it, in [0, 1]
    peak_offset: np.ndarray  # peak distance from the object centroid / the object's radius, >= 0
    entropy: np.ndarray  # Shannon entropy of the normalised map / log(pixels), in [0, 1]
    cam_total: np.ndarray  # sum of the ReLU'd low-resolution map (0 for an empty map)
    state: np.ndarray  # STATE_OK, STATE_EMPTY_MAP or STATE_EMPTY_OBJECT

    def as_columns(self, suffix: str = "") -> dict[str, np.ndarray]:
        return {f"{name}{suffix}": getattr(self, name) for name in (*METRICS, "state")}


def upsample(maps: np.ndarray | torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """ReLU and bilinear upsampling (half-pixel centres, like cv2.resize) of B x h x w maps."""
    maps = torch.as_tensor(maps, dtype=torch.float32)
    return F.interpolate(maps.clamp(min=0)[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def reference_maps(masks: np.ndarray, map_shape: tuple[int, int]) -> torch.Tensor:
    """The object's own map at the CAM's resolution: each cell holds the share of it covered by the object."""
    masks = torch.as_tensor(np.asarray(masks), dtype=torch.float32)
    return F.adaptive_avg_pool2d(masks[:, None], map_shape)[:, 0]


def _energy(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    total = maps.sum(dim=(1, 2))
    inside = (maps * masks).sum(dim=(1, 2))
    return torch.where(total > 0, inside / torch.where(total > 0, total, 1.0), torch.nan)


def localisation(maps: np.ndarray, masks: np.ndarray) -> Localisation:
    """Statistics of B low-resolution maps (h x w, any sign) against B object masks (H x W bool)."""
    masks = np.asarray(masks, dtype=bool)
    if maps.shape[0] != masks.shape[0]:
        raise ValueError(f"{maps.shape[0]} maps but {masks.shape[0]} masks")
    batch, height, width = masks.shape
    lowres = torch.as_tensor(np.asarray(maps), dtype=torch.float32).clamp(min=0)
    up = upsample(lowres, (height, width)).double()
    mask_t = torch.from_numpy(masks)
    area = mask_t.sum(dim=(1, 2))

    cam_total = lowres.double().sum(dim=(1, 2))
    empty_map = up.sum(dim=(1, 2)) <= 0
    empty_object = area == 0
    undefined = empty_map | empty_object

    energy = _energy(up, mask_t.double())
    reference = _energy(upsample(reference_maps(masks, lowres.shape[1:]), (height, width)).double(), mask_t.double())
    relative = torch.where(reference > 0, (energy / reference).clamp(0.0, 1.0), torch.nan)

    flat = up.reshape(batch, -1)
    flat_mask = mask_t.reshape(batch, -1)
    peak = flat.argmax(dim=1)
    pointing = flat_mask.gather(1, peak[:, None])[:, 0].double()

    # rank accuracy: walk the pixels from the highest value; count object pixels among the first |object|
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    hits = flat_mask.gather(1, order).cumsum(dim=1)
    k = area.clamp(min=1)
    rank = hits.gather(1, (k - 1)[:, None])[:, 0].double() / k.double()

    rows = torch.arange(height, dtype=torch.float64)[None, :, None]
    cols = torch.arange(width, dtype=torch.float64)[None, None, :]
    safe_area = area.clamp(min=1).double()
    centre_y = (mask_t * rows).sum(dim=(1, 2)) / safe_area
    centre_x = (mask_t * cols).sum(dim=(1, 2)) / safe_area
    radius = torch.sqrt(safe_area / torch.pi)  # radius of the circle with the object's area
    offset = torch.hypot((peak // width).double() - centre_y, (peak % width).double() - centre_x) / radius

    p = flat / flat.sum(dim=1, keepdim=True).clamp(min=torch.finfo(torch.float64).tiny)
    entropy = -(torch.where(p > 0, p * torch.log(p), 0.0)).sum(dim=1) / np.log(flat.shape[1])

    state = np.full(batch, STATE_OK, dtype=object)
    state[empty_object.numpy()] = STATE_EMPTY_OBJECT
    state[empty_map.numpy()] = STATE_EMPTY_MAP

    def out(values: torch.Tensor, nan_where: torch.Tensor = undefined) -> np.ndarray:
        return torch.where(nan_where, torch.nan, values).numpy().astype(np.float32)

    return Localisation(
        energy_in_object=out(energy),
        reference_energy=out(reference, empty_object),
        relative_energy=out(relative),
        pointing_hit=out(pointing),
        rank_accuracy=out(rank),
        peak_offset=out(offset),
        entropy=out(entropy, empty_map),
        cam_total=cam_total.numpy().astype(np.float32),
        state=state,
    )
