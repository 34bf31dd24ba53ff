"""Intervention probes: does a prediction need its background, or only its object?

A Grad-CAM map says where the evidence is; only removing a part of the image
says whether the prediction needs it. Each image with an object region is shown
to the model twice more (after the Backgrounds Challenge, Xiao et al. 2020):

- *object only*: every pixel outside the object's part of the image is
  replaced by a fill;
- *background only*: the object's part is replaced by the fill.

The object's part is its region grown by about one cell of the map, so the
object keeps its own halo, but never into another source: a pixel of the grown
ring belongs to the object only if it is nearer to the object than to any other
source (a component of pixels outside the region, more than ``DETECT_SIGMA``
robust sigma from the sky, whose peak lies away from the region's edge), and
another source's own pixels never do.
Without that rule a star a few pixels off a galaxy would be half kept in the
object-only view, and the probe would under-state how much the prediction needs it.

The fill has to look like the image's own empty background, not like a hole
whose shape tells the model where the object was (Rong et al. 2022, ROAD):

- ``sky`` (default): the image's own background (outside the object's part,
  inside the image's own pixels), after removing its sources, drawn in blocks
  of ``SKY_BLOCK_PX`` px with a generator seeded by the image's id: each block
  of the filled area is copied from a random window of that size whose pixels
  all deviate from the background's per-channel median by at most 3 robust
  sigma in every channel (no star, no neighbour). Drawing blocks rather than
  single pixels keeps the noise's texture: the noise of real cutouts is
  correlated over a few pixels (JPEG's 8 px blocks and subsampled colour, the
  resampling of a mosaic), and a pixel-by-pixel draw makes it white, a texture
  the model never saw, which alone moved boundary predictions of a model
  trained without any shortcut. Where no such window fits, the block is halved,
  down to single pixels. The filled area has the empty background's
  per-channel median, spread and texture, and no source.
- ``mean``: the per-channel mean of those source-free background pixels.
- ``blur``: the image smoothed by a Gaussian of one cell, so only the coarse
  structure of what was there remains.

Removing pixels moves a model's output even where nothing it used was removed:
the fill is new noise, out of the training distribution, and a boundary
prediction can cross over on that alone (ROAD, Rong et al. 2022). Each image
therefore gets a *control* view, one of ``CONTROLS``:

- ``refill`` (default): the same fill applied to the background's source-free
  pixels only (its sky), so every source stays where it is and nothing the
  model could use is removed;
- ``redraw``: a second, independent draw of the object-only view.

The control's *effect* is how far it moves the predicted class's margin (the
margin against the refilled image, or between the two object-only draws).
``background_reliance`` is the share of the margin (its logit minus the best
other logit) lost when the background is replaced, beyond that effect; where the
margin itself is no larger than the effect, the image is ``uncertain``: what the
fill alone does could decide it, and it is never flagged.
"""

import zlib
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from saliency_audit.saliency.vocabulary import STATE_EMPTY_OBJECT, STATE_NO_BACKGROUND, STATE_OK

FILLS = ("sky", "mean", "blur")
CONTROLS = ("refill", "redraw")
SOURCE_SIGMA = 3.0  # background pixels further than this from the median (robust sigma) are not sky
DETECT_SIGMA = 5.0  # pixels this far from the sky, outside the region, may belong to another source
SOURCE_CLEARANCE_PX = 2.0  # ... when their component peaks further than this from the region
MIN_SKY_PIXELS = 16  # fewer clean background pixels than this: draw from every background pixel
SKY_BLOCK_PX = 8  # the sky fill copies windows this wide (a JPEG block), halved where none fits
MIN_WINDOWS = 4  # fewer distinct windows than this would tile the fill with visibly repeated patches


def sky_level(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel median and robust sigma (1.4826 MAD, at least half a grey level) of N x 3 pixels."""
    median = np.median(pixels, axis=0)
    return median, np.maximum(1.4826 * np.median(np.abs(pixels - median), axis=0), 0.5)


def sky_mask(image: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The source-free pixels of one H x W x 3 image's ``background`` (all of it if too few are)."""
    median, sigma = sky_level(image[background].astype(np.float32))
    clean = background & (np.abs(image.astype(np.float32) - median) <= SOURCE_SIGMA * sigma).all(axis=2)
    return clean if clean.sum() >= MIN_SKY_PIXELS else background


def sky_windows(sky: np.ndarray, block: int) -> np.ndarray:
    """Top-left corners (K x 2) of the ``block`` x ``block`` windows that lie wholly inside ``sky``."""
    table = np.pad(sky.astype(np.int32).cumsum(axis=0).cumsum(axis=1), ((1, 0), (1, 0)))
    inside = table[block:, block:] - table[:-block, block:] - table[block:, :-block] + table[:-block, :-block]
    return np.argwhere(inside == block * block)


def resample_sky(image: np.ndarray, replace: np.ndarray, sky: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` with its ``replace`` pixels copied, block by block, from random windows of ``sky``."""
    out = image.copy()
    ys, xs = np.nonzero(replace)
    block = SKY_BLOCK_PX
    while block > 1 and len(corners := sky_windows(sky, block)) < MIN_WINDOWS:
        block //= 2
    if block == 1:
        rows, cols = np.nonzero(sky)
        pick = rng.integers(len(rows), size=len(ys))
        out[ys, xs] = image[rows[pick], cols[pick]]
        return out
    # a grid of blocks, at a random phase, over the image; each block gets its own window
    ty, tx = ys + rng.integers(block), xs + rng.integers(block)
    choice = rng.integers(len(corners), size=(ty.max() // block + 1, tx.max() // block + 1))
    corner = corners[choice[ty // block, tx // block]]
    out[ys, xs] = image[corner[:, 0] + ty % block, corner[:, 1] + tx % block]
    return out


def object_part(
    image: np.ndarray, mask: np.ndarray, area: np.ndarray, radius: float, neighbours: np.ndarray | None = None
) -> np.ndarray:
    """The pixels that go with the object: its region, and the ring ``radius`` px around it that is
    nearer to it than to any other source of the image (see the module's docstring). ``neighbours``
    (the other segments of ``saliency.object.method: segments``) are other sources too, also where
    their light is too faint or too close to the region for the detection here."""
    distance = ndimage.distance_transform_edt(~mask) if mask.any() else np.full(mask.shape, np.inf)
    grown = area & (distance <= radius)
    background = area & ~grown
    given = np.zeros(mask.shape, dtype=bool) if neighbours is None else neighbours & area & ~mask
    if radius <= 0 or not background.any():
        return (grown & ~given) | (mask & area)
    median, sigma = sky_level(image[background].astype(np.float32))
    excess = (np.abs(image.astype(np.float32) - median) / sigma).max(axis=2)
    labels, n = ndimage.label(area & ~mask & (excess > DETECT_SIGMA))
    # a component peaking away from the region is a source of its own; one that peaks at the
    # region's edge is the object's own outskirts, which fade outward
    peaks = ndimage.maximum_position(excess, labels, index=np.arange(1, n + 1)) if n else []
    own_peak = np.array([distance[peak] > SOURCE_CLEARANCE_PX for peak in peaks], dtype=bool)
    others = np.isin(labels, np.flatnonzero(own_peak) + 1) | given
    if not others.any():
        return grown | (mask & area)
    nearer = distance < ndimage.distance_transform_edt(~others)
    return (mask & area) | (grown & nearer & ~others)


def fill_region(
    image: np.ndarray, replace: np.ndarray, sky: np.ndarray, fill: str, rng: np.random.Generator, sigma: float
) -> np.ndarray:
    """A copy of ``image`` (H x W x 3 uint8) whose ``replace`` pixels are filled from ``sky``, the
    mask of its source-free background (``sky_mask``), or smoothed by ``sigma`` px (``blur``)."""
    if not replace.any():
        return image.copy()
    if fill == "sky":
        return resample_sky(image, replace, sky, rng)
    out = image.copy()
    if fill == "blur":
        smooth = ndimage.gaussian_filter(image.astype(np.float32), sigma=(sigma, sigma, 0))
        out[replace] = np.clip(np.rint(smooth[replace]), 0, 255).astype(np.uint8)
    elif fill == "mean":
        out[replace] = np.clip(np.rint(image[sky].astype(np.float64).mean(axis=0)), 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"saliency.probes.fill must be one of {FILLS}, got {fill!r}")
    return out


def image_seed(seed: int, image_id: str) -> np.random.Generator:
    """A generator that depends on the image's id only, so the probes do not depend on sharding."""
    return np.random.default_rng([seed, zlib.crc32(image_id.encode())])


def probe_images(
    images: np.ndarray,
    masks: np.ndarray,
    areas: np.ndarray,
    ids: Sequence[str],
    fill: str,
    radius: float,
    seed: int,
    control: str = "refill",
    neighbours: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Object-only, background-only and control versions of B x H x W x 3 images, and a state per image.

    ``masks`` are the object regions, ``areas`` the pixels that are the image's own
    (not padding, which stays as it is). An image with an empty region gets
    ``empty_object``, one whose object part leaves no background ``no_background``;
    both are returned unchanged. ``control`` is one of ``CONTROLS``; ``neighbours`` (B x H x W, optional)
    the other segments of each image, which never join its object's part.
    """
    if control not in CONTROLS:
        raise ValueError(f"saliency.probes.control must be one of {CONTROLS}, got {control!r}")
    object_only, background_only, controls = images.copy(), images.copy(), images.copy()
    state = np.full(len(images), STATE_OK, dtype=object)
    for k, image_id in enumerate(ids):
        if not (masks[k] & areas[k]).any():
            state[k] = STATE_EMPTY_OBJECT
            continue
        part = object_part(images[k], masks[k], areas[k], radius, None if neighbours is None else neighbours[k])
        background = areas[k] & ~part
        if not background.any():
            state[k] = STATE_NO_BACKGROUND
            continue
        rng, sky = image_seed(seed, image_id), sky_mask(images[k], background)
        object_only[k] = fill_region(images[k], background, sky, fill, rng, radius)
        background_only[k] = fill_region(images[k], part, sky, fill, rng, radius)
        replaced = background & sky if control == "refill" else background
        controls[k] = fill_region(images[k], replaced, sky, fill, rng, radius)  # the generator's next draw
    return object_only, background_only, controls, state


def margins(logits: np.ndarray) -> np.ndarray:
    """B x C margins: each class's logit minus the best logit of the other classes."""
    logits = np.asarray(logits, dtype=np.float64)
    order = np.sort(logits, axis=1)
    best, second = order[:, -1:], order[:, -2:-1]
    return logits - np.where(logits >= best, second, best)


def control_effect(margin: np.ndarray, margin_object_only: np.ndarray, margin_control: np.ndarray,
                   control: str) -> np.ndarray:  # fmt: skip
    """How far the control moves the predicted class's margin: against the image (``refill``), or
    between the two draws of the object-only view (``redraw``)."""
    reference = margin if control == "refill" else margin_object_only
    return np.abs(np.asarray(reference, dtype=np.float64) - np.asarray(margin_control, dtype=np.float64))


def background_reliance(
    margin: np.ndarray, margin_object_only: np.ndarray, effect: np.ndarray | float = 0.0
) -> np.ndarray:
    """Share of a positive margin lost when the background is replaced, beyond the control's ``effect``,
    clipped to [0, 1]; NaN where there is no margin to lose."""
    margin = np.asarray(margin, dtype=np.float64)
    lost = (margin - np.asarray(margin_object_only, dtype=np.float64) - effect) / np.where(margin > 0, margin, 1.0)
    return np.where(margin > 0, np.clip(lost, 0.0, 1.0), np.nan)


def uncertain(margin: np.ndarray, effect: np.ndarray) -> np.ndarray:
    """The verdicts the fill alone could decide: the margin is no larger than the control's effect."""
    return np.asarray(margin, dtype=np.float64) <= np.asarray(effect, dtype=np.float64)
