"""Localisation statistics of Grad-CAM maps against object regions, a batch at a time.

The metrics follow Quantus' localisation family (relevance mass accuracy,
pointing game, relevance rank accuracy) plus the peak offset, the spread of
the map and its raw magnitude. Grad-CAM maps are coarse (8 x 8 for a 64 px
image); they are drawn in pixels by ``map_geometry.place``, each cell at its
receptive-field centre, and they blur across the object's border: even a map
that sits only on the galaxy loses part of its mass outside a tight mask. So
each map is also compared with a *reference*: the energy that a map made of
the object itself keeps after the same pooling to the cells and placement back.
``relative_energy`` = energy_in_object / reference is what the
``background_focused`` flag reads, so the flag means the same at every map
resolution and object size.

Every function takes a batch (B x h x w maps, B x H x W boolean masks) and
works on whole arrays, with no Python loop over images or pixels.
"""

from dataclasses import dataclass

import numpy as np
import torch

from saliency_audit.audit.map_geometry import MapGeometry, place, pool
from saliency_audit.saliency.vocabulary import STATE_EMPTY_MAP, STATE_EMPTY_OBJECT, STATE_OK

# Why a statistic could not be computed: its own state, never a silent NaN.

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


def _energy(maps: torch.Tensor, masks: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """Share of each flattened map's ``total`` that lies on its mask (NaN for an empty map)."""
    inside = (maps * masks).sum(dim=1, dtype=torch.float64)
    return torch.where(total > 0, inside / torch.where(total > 0, total, 1.0), torch.nan)


def _rank_accuracy(flat: torch.Tensor, flat_mask: torch.Tensor, area: torch.Tensor) -> torch.Tensor:
    """Share of the |object| highest pixels of each map that lie in the object.

    Equal values are taken in pixel order, as a stable sort from the highest value
    would; finding the |object|-th value with one sort of the values (no argsort,
    no gather) is what keeps this the cheap part of the batch.
    """
    k = area.clamp(min=1)
    ascending = np.sort(flat.numpy(), axis=1)
    kth = torch.from_numpy(ascending[np.arange(len(k)), flat.shape[1] - k.numpy()])[:, None]
    del ascending
    above = flat > kth
    hits = (above & flat_mask).sum(dim=1)
    tied = flat == kth
    room = (k - above.sum(dim=1))[:, None]  # how many of the tied pixels still fit among the first |object|
    hits += (tied & flat_mask & (tied.cumsum(dim=1, dtype=torch.int32) <= room)).sum(dim=1)
    return hits.double() / k.double()


def localisation(maps: np.ndarray, masks: np.ndarray, geometry: MapGeometry) -> Localisation:
    """Statistics of B low-resolution maps (h x w, any sign) against B object masks (H x W bool);
    ``geometry`` places the cells in pixels."""
    masks = np.asarray(masks, dtype=bool)
    if maps.shape[0] != masks.shape[0]:
        raise ValueError(f"{maps.shape[0]} maps but {masks.shape[0]} masks")
    batch, height, width = masks.shape
    lowres = torch.as_tensor(np.asarray(maps), dtype=torch.float32).clamp(min=0)
    # pixel-wise work in float32 (the maps' own precision), sums accumulated in float64:
    # a batch of 64 px maps then needs a few B x H x W float32 temporaries, not float64 ones
    flat = place(lowres, geometry, (height, width)).reshape(batch, -1)
    flat_mask = torch.from_numpy(masks.reshape(batch, -1))
    mask_f = flat_mask.to(torch.float32)
    area = flat_mask.sum(dim=1)

    cam_total = lowres.sum(dim=(1, 2), dtype=torch.float64)
    total = flat.sum(dim=1, dtype=torch.float64)
    empty_map = total <= 0
    empty_object = area == 0
    undefined = empty_map | empty_object

    energy = _energy(flat, mask_f, total)
    reference_up = place(pool(masks, geometry, lowres.shape[1:]), geometry, (height, width)).reshape(batch, -1)
    reference = _energy(reference_up, mask_f, reference_up.sum(dim=1, dtype=torch.float64))
    del reference_up
    relative = torch.where(reference > 0, (energy / reference).clamp(0.0, 1.0), torch.nan)

    peak = flat.argmax(dim=1)
    pointing = flat_mask.gather(1, peak[:, None])[:, 0].double()

    rank = _rank_accuracy(flat, flat_mask, area)

    pixel = torch.arange(height * width)
    safe_area = area.clamp(min=1).double()
    centre_y = (mask_f @ (pixel // width).float()).double() / safe_area
    centre_x = (mask_f @ (pixel % width).float()).double() / safe_area
    radius = torch.sqrt(safe_area / torch.pi)  # radius of the circle with the object's area
    offset = torch.hypot((peak // width).double() - centre_y, (peak % width).double() - centre_x) / radius

    p = flat / total.clamp(min=torch.finfo(torch.float64).tiny)[:, None].float()
    entropy = torch.special.entr(p).sum(dim=1, dtype=torch.float64) / np.log(flat.shape[1])

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
