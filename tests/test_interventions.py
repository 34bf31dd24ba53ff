"""Intervention probes: the fills look like the image's empty background, margins and reliance;
the batched implementation gives, bit for bit, the views of the image-by-image one it replaced."""

import zlib
from collections.abc import Sequence

import numpy as np
import pytest
from scipy import ndimage

from saliency_audit.data.image_io import image_area
from saliency_audit.saliency import interventions
from saliency_audit.saliency.interventions import (
    CONTROLS,
    FILLS,
    background_reliance,
    control_effect,
    fill_region,
    margins,
    object_part,
    probe_images,
    resample_sky,
    sky_level,
    sky_levels,
    sky_mask,
    squared_distances,
    uncertain,
)
from saliency_audit.saliency.vocabulary import STATE_EMPTY_OBJECT, STATE_NO_BACKGROUND, STATE_OK

SIZE = 64


def dilate(masks: np.ndarray, radius: float) -> np.ndarray:
    """Masks grown by ``radius`` px: the plain dilation, without the rule for other sources."""
    return np.stack([ndimage.distance_transform_edt(~mask) <= radius for mask in masks])


def sky_image(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A noisy coloured sky with a bright disk (the object) at the centre and a saturated star."""
    rng = np.random.default_rng(seed)
    image = np.clip(rng.normal([40, 60, 80], [6, 8, 10], (SIZE, SIZE, 3)), 0, 255)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    disk = np.hypot(yy - 31.5, xx - 31.5) < 8
    image[disk] = [200, 180, 160]
    image[np.hypot(yy - 8, xx - 52) < 3] = 255  # the star
    return image.astype(np.uint8), disk


def test_the_sky_fill_has_the_backgrounds_median_and_spread_and_no_star() -> None:
    image, disk = sky_image()
    replace = dilate(disk[None], 8)[0]
    background = ~replace
    out = fill_region(image, replace, sky_mask(image, background), "sky", np.random.default_rng(1), 8.0)
    star = np.hypot(*np.mgrid[0:SIZE, 0:SIZE] - np.array([8, 52])[:, None, None]) < 3
    empty = background & ~dilate(star[None], 2)[0]  # the background without its source
    filled, reference = out[replace].astype(float), image[empty].astype(float)
    np.testing.assert_allclose(np.median(filled, axis=0), np.median(reference, axis=0), atol=1.5)
    np.testing.assert_allclose(filled.std(axis=0), reference.std(axis=0), rtol=0.1)
    assert (filled < 250).all()  # no star pixel is drawn
    assert (out[~replace] == image[~replace]).all()  # nothing else changes
    # the counterfactual: drawing from every background pixel would bring star pixels along
    assert (image[background] == 255).all(axis=1).sum() > 10


def lag_correlation(values: np.ndarray, mask: np.ndarray) -> float:
    """Correlation of horizontally adjacent pixels of one channel, over pairs wholly inside ``mask``."""
    pairs = mask[:, 1:] & mask[:, :-1]
    left, right = values[:, :-1][pairs], values[:, 1:][pairs]
    return float(np.corrcoef(left, right)[0, 1])


def test_the_sky_fill_keeps_the_noise_texture() -> None:
    # noise correlated over a few pixels, as in compressed or resampled cutouts
    rng = np.random.default_rng(3)
    noise = ndimage.gaussian_filter(rng.normal(0, 1, (SIZE, SIZE)), 1.5)
    image = np.repeat(np.clip(100 + 12 * noise / noise.std(), 0, 255)[..., None], 3, axis=2).astype(np.uint8)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    replace = np.hypot(yy - 31.5, xx - 31.5) < 16
    background = ~dilate(replace[None], 2)[0]
    sky = sky_mask(image, background)
    reference = lag_correlation(image[..., 0].astype(float), background)
    assert reference > 0.7
    out = fill_region(image, replace, sky, "sky", np.random.default_rng(4), 8.0)
    assert abs(lag_correlation(out[..., 0].astype(float), replace) - reference) < 0.15
    # the counterfactual: single pixels drawn at random make the same noise white
    rows, cols = np.nonzero(sky)
    pick = np.random.default_rng(4).integers(len(rows), size=int(replace.sum()))
    white = image.copy()
    white[replace] = image[rows[pick], cols[pick]]
    assert abs(lag_correlation(white[..., 0].astype(float), replace)) < 0.2


def test_the_sky_fill_halves_its_blocks_where_the_background_is_narrow() -> None:
    image, disk = sky_image()
    background = np.zeros((SIZE, SIZE), bool)
    background[:, :3] = True  # a strip 3 px wide: no 8 or 4 px window fits, 2 px ones do
    replace = disk
    out = fill_region(image, replace, sky_mask(image, background), "sky", np.random.default_rng(0), 8.0)
    drawn = {tuple(pixel) for pixel in out[replace]}
    assert drawn <= {tuple(pixel) for pixel in image[background]}
    assert len(drawn) > 20  # many windows, not one patch repeated


def test_mean_and_blur_fills() -> None:
    image, disk = sky_image()
    replace, background = disk, ~dilate(disk[None], 8)[0]
    sky = sky_mask(image, background)
    mean = fill_region(image, replace, sky, "mean", np.random.default_rng(0), 8.0)
    assert np.abs(mean[replace].astype(float) - [40, 60, 80]).max() <= 2
    blur = fill_region(image, replace, sky, "blur", np.random.default_rng(0), 8.0)
    assert blur[replace].std(axis=0).max() < image[replace].std(axis=0).max() + 30
    assert (blur[31, 31] < image[31, 31]).all()  # the disk's light is spread into its surroundings
    with pytest.raises(ValueError, match="saliency.probes.fill"):
        fill_region(image, replace, sky, "zeros", np.random.default_rng(0), 8.0)


def test_probes_partition_the_image_and_keep_padding() -> None:
    image, disk = sky_image()
    images = np.stack([image, image])
    areas = np.ones((2, SIZE, SIZE), bool)
    areas[1, :, :8] = False  # padding on the left of the second image
    images[1, :, :8] = 0
    object_only, background_only, _, state = probe_images(
        images, np.stack([disk, disk]), areas, ["a", "b"], "sky", 4.0, seed=0
    )
    grown = dilate(disk[None], 4)[0]
    assert state.tolist() == [STATE_OK, STATE_OK]
    assert (object_only[:, grown] == images[:, grown]).all()  # the grown object is kept
    assert (background_only[:, ~grown & areas[0]] == images[:, ~grown & areas[0]]).all()
    assert not (background_only[0][disk] == image[disk]).all(axis=1).any()
    assert (object_only[1, :, :8] == 0).all() and (background_only[1, :, :8] == 0).all()
    again, _, _, _ = probe_images(images[::-1], np.stack([disk, disk]), areas[::-1], ["b", "a"], "sky", 4.0, seed=0)
    assert (again[1] == object_only[0]).all()  # seeded by the id, not the position


def test_an_object_that_fills_the_image_has_no_background() -> None:
    image, _ = sky_image()
    _, _, _, state = probe_images(image[None], np.ones((1, SIZE, SIZE), bool), np.ones((1, SIZE, SIZE), bool),
                               ["a"], "sky", 1.0, seed=0)  # fmt: skip
    assert state.tolist() == [STATE_NO_BACKGROUND]


def test_an_empty_region_gets_no_verdict() -> None:
    """No object to keep: the object-only view would blank the whole image and read as reliance."""
    image, _ = sky_image()
    object_only, background_only, _, state = probe_images(
        image[None], np.zeros((1, SIZE, SIZE), bool), np.ones((1, SIZE, SIZE), bool), ["a"], "sky", 8.0, seed=0
    )
    assert state.tolist() == [STATE_EMPTY_OBJECT]
    assert (object_only[0] == image).all() and (background_only[0] == image).all()


def test_margins_and_reliance() -> None:
    logits = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, -3.0]])
    np.testing.assert_allclose(margins(logits), [[1.5, -1.5, -3.0], [0.0, 0.0, -3.0]])
    reliance = background_reliance(np.array([2.0, 2.0, 2.0, 0.0]), np.array([1.0, -3.0, 2.5, 1.0]))
    np.testing.assert_allclose(reliance[:3], [0.5, 1.0, 0.0])
    assert np.isnan(reliance[3])
    # net of the control: a loss of 1 of a margin of 2, of which the fill alone explains 0.6
    np.testing.assert_allclose(background_reliance(np.array([2.0]), np.array([1.0]), np.array([0.6])), [0.2])


def test_the_control_effect_and_the_uncertain_verdicts() -> None:
    margin, object_only, control = np.array([2.0, 0.2, 1.0]), np.array([0.5, -0.4, 0.9]), np.array([1.9, -0.1, 1.0])
    refill = control_effect(margin, object_only, control, "refill")  # the image against its refilled self
    np.testing.assert_allclose(refill, [0.1, 0.3, 0.0])
    np.testing.assert_allclose(control_effect(margin, object_only, control, "redraw"), [1.4, 0.3, 0.1])
    # the second image's margin (0.2) is within what the fill alone does (0.3): the fill could decide it
    assert uncertain(margin, refill).tolist() == [False, True, False]


def test_the_refill_control_removes_no_source_and_redraw_is_a_second_draw() -> None:
    image, disk = sky_image()
    image[8:11, 50:53] = 250  # a star in the background, away from the galaxy
    areas = np.ones((1, SIZE, SIZE), bool)
    object_only, _, refilled, state = probe_images(image[None], disk[None], areas, ["a"], "sky", 4.0, 0, "refill")
    assert state.tolist() == [STATE_OK]
    sky = sky_mask(image, ~dilate(disk[None], 4)[0])
    assert (refilled[0][~sky] == image[~sky]).all()  # the galaxy and the star stay where they are
    assert (refilled[0][8:11, 50:53] == 250).all() and not (object_only[0][8:11, 50:53] == 250).all()
    assert (refilled[0][sky] != image[sky]).any(axis=1).mean() > 0.5  # the sky's noise is drawn anew
    first, _, second, _ = probe_images(image[None], disk[None], areas, ["a"], "sky", 4.0, 0, "redraw")
    grown = dilate(disk[None], 4)[0]
    assert (second[0][grown] == first[0][grown]).all() and (second[0] != first[0]).any()
    with pytest.raises(ValueError, match="saliency.probes.control"):
        probe_images(image[None], disk[None], areas, ["a"], "sky", 4.0, 0, "twice")


def test_the_objects_part_keeps_its_own_halo_but_not_a_neighbouring_star() -> None:
    """A galaxy whose light fades past its region's edge, and a star 9 px off that edge: the
    grown ring keeps the galaxy's outskirts, but neither the star nor the pixels nearer to it."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    r_galaxy = np.hypot(yy - 31.5, xx - 31.5)
    light = 150 * np.exp(-r_galaxy / 4.0)
    light += 200 * np.exp(-(np.hypot(yy - 31.5, xx - 52) ** 2) / 4.0)  # the star, 20.5 px from the centre
    image = np.repeat(np.clip(50 + light[..., None] + rng.normal(0, 3, (SIZE, SIZE, 1)), 0, 255), 3, axis=2)
    mask = r_galaxy < 11.5
    part = object_part(image.astype(np.uint8), mask, np.ones_like(mask), 8.0)
    assert part[mask].all()
    assert part[31, 31 - 18] and part[31 + 18, 31]  # the galaxy's faint outskirts, 6-7 px out, are kept
    assert not part[31, 52] and not part[31, 49]  # the star and its core
    assert not part[31, 47]  # 4 px from the edge, but 5 px from the star: nearer to the star
    # the counterfactual: plain dilation keeps the star's near side
    assert dilate(mask[None], 8.0)[0][31, 49]


def test_a_neighbour_segment_never_joins_the_objects_part_even_touching_the_region() -> None:
    """A star whose light runs into the galaxy's region (its peak 2 px off the edge): the detection
    here takes it for the galaxy's own outskirts and keeps it; given as a neighbour segment (what
    ``saliency.object.method: segments`` finds), it is removed with the background."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    r_galaxy = np.hypot(yy - 31.5, xx - 31.5)
    star = np.hypot(yy - 31.5, xx - 44) < 2.5  # 12.5 px from the centre, its peak 2 px off the region
    light = 150 * np.exp(-r_galaxy / 4.0) + 200 * np.exp(-(np.hypot(yy - 31.5, xx - 44) ** 2) / 4.0)
    image = np.repeat(np.clip(50 + light[..., None] + rng.normal(0, 3, (SIZE, SIZE, 1)), 0, 255), 3, axis=2)
    mask = r_galaxy < 11.5
    kept = object_part(image.astype(np.uint8), mask, np.ones_like(mask), 8.0)
    assert kept[star & ~mask].all()  # the counterfactual: without the segments the star stays
    part = object_part(image.astype(np.uint8), mask, np.ones_like(mask), 8.0, neighbours=star)
    assert not part[star & ~mask].any() and part[mask].all() and part[31, 31 - 16]


# The image-by-image implementation that the batched one replaced (interventions.py before it was
# batched), frozen: the reference it must match bit for bit. benchmarks/probes.py times it too.
DETECT_SIGMA, SOURCE_SIGMA, SOURCE_CLEARANCE_PX = 5.0, 3.0, 2.0
MIN_SKY_PIXELS, SKY_BLOCK_PX, MIN_WINDOWS = 16, 8, 4
assert (DETECT_SIGMA, SOURCE_SIGMA, SOURCE_CLEARANCE_PX, MIN_SKY_PIXELS, SKY_BLOCK_PX, MIN_WINDOWS) == (
    interventions.DETECT_SIGMA, interventions.SOURCE_SIGMA, interventions.SOURCE_CLEARANCE_PX,
    interventions.MIN_SKY_PIXELS, interventions.SKY_BLOCK_PX, interventions.MIN_WINDOWS,
)  # fmt: skip


def reference_sky_level(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel median and robust sigma (1.4826 MAD, at least half a grey level) of N x 3 pixels."""
    median = np.median(pixels, axis=0)
    return median, np.maximum(1.4826 * np.median(np.abs(pixels - median), axis=0), 0.5)


def reference_sky_mask(image: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The source-free pixels of one H x W x 3 image's ``background`` (all of it if too few are)."""
    median, sigma = reference_sky_level(image[background].astype(np.float32))
    clean = background & (np.abs(image.astype(np.float32) - median) <= SOURCE_SIGMA * sigma).all(axis=2)
    return clean if clean.sum() >= MIN_SKY_PIXELS else background


def reference_sky_windows(sky: np.ndarray, block: int) -> np.ndarray:
    """Top-left corners (K x 2) of the ``block`` x ``block`` windows that lie wholly inside ``sky``."""
    table = np.pad(sky.astype(np.int32).cumsum(axis=0).cumsum(axis=1), ((1, 0), (1, 0)))
    inside = table[block:, block:] - table[:-block, block:] - table[block:, :-block] + table[:-block, :-block]
    return np.argwhere(inside == block * block)


def reference_resample_sky(
    image: np.ndarray, replace: np.ndarray, sky: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """``image`` with its ``replace`` pixels copied, block by block, from random windows of ``sky``."""
    out = image.copy()
    ys, xs = np.nonzero(replace)
    block = SKY_BLOCK_PX
    while block > 1 and len(corners := reference_sky_windows(sky, block)) < MIN_WINDOWS:
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


def reference_object_part(
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
    median, sigma = reference_sky_level(image[background].astype(np.float32))
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


def reference_fill_region(
    image: np.ndarray, replace: np.ndarray, sky: np.ndarray, fill: str, rng: np.random.Generator, sigma: float
) -> np.ndarray:
    """A copy of ``image`` (H x W x 3 uint8) whose ``replace`` pixels are filled from ``sky``, the
    mask of its source-free background (``sky_mask``), or smoothed by ``sigma`` px (``blur``)."""
    if not replace.any():
        return image.copy()
    if fill == "sky":
        return reference_resample_sky(image, replace, sky, rng)
    out = image.copy()
    if fill == "blur":
        smooth = ndimage.gaussian_filter(image.astype(np.float32), sigma=(sigma, sigma, 0))
        out[replace] = np.clip(np.rint(smooth[replace]), 0, 255).astype(np.uint8)
    elif fill == "mean":
        out[replace] = np.clip(np.rint(image[sky].astype(np.float64).mean(axis=0)), 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"saliency.probes.fill must be one of {FILLS}, got {fill!r}")
    return out


def reference_image_seed(seed: int, image_id: str) -> np.random.Generator:
    """A generator that depends on the image's id only, so the probes do not depend on sharding."""
    return np.random.default_rng([seed, zlib.crc32(image_id.encode())])


def reference_probe_images(
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
        part = reference_object_part(
            images[k], masks[k], areas[k], radius, None if neighbours is None else neighbours[k]
        )
        background = areas[k] & ~part
        if not background.any():
            state[k] = STATE_NO_BACKGROUND
            continue
        rng, sky = reference_image_seed(seed, image_id), reference_sky_mask(images[k], background)
        object_only[k] = reference_fill_region(images[k], background, sky, fill, rng, radius)
        background_only[k] = reference_fill_region(images[k], part, sky, fill, rng, radius)
        replaced = background & sky if control == "refill" else background
        controls[k] = reference_fill_region(images[k], replaced, sky, fill, rng, radius)  # the generator's next draw
    return object_only, background_only, controls, state


def structured_batch(seed: int, n: int = 40, size: int = SIZE) -> tuple[np.ndarray, ...]:
    """Demo-like cutouts and the cases the probes branch on: a galaxy whose light fades past its region,
    stars (saturated plateaus among them, which tie for a component's peak) near and far from it,
    noise white or correlated, padding, empty regions, regions that fill the image, backgrounds too
    narrow for the sky's larger blocks. Returns images, masks, areas, neighbours and ids."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    images = np.zeros((n, size, size, 3), np.uint8)
    masks, areas, neighbours = (np.zeros((n, size, size), bool) for _ in range(3))
    for k in range(n):
        noise = rng.normal(0, 1, (size, size, 3))
        if rng.random() < 0.5:  # correlated over a few pixels, as in compressed cutouts
            noise = ndimage.gaussian_filter(noise, (1.2, 1.2, 0)) * 2.5
        light = rng.uniform(10, 120, 3) + rng.uniform(1, 12) * noise
        cy, cx = (size - 1) / 2 + rng.normal(0, 2, 2)
        r = np.hypot(yy - cy, xx - cx)
        light += rng.uniform(30, 200) * np.exp(-r / rng.uniform(2, 6))[..., None] * rng.uniform(0.6, 1.0, 3)
        masks[k] = r < rng.uniform(3, 14)
        for _ in range(rng.integers(0, 4)):  # stars, some a pixel or two off the region's edge
            at = np.array([cy, cx]) + rng.uniform(-1, 1, 2) * rng.uniform(5, size / 2)
            radius = rng.uniform(1, 3.5)
            star = np.hypot(yy - at[0], xx - at[1]) < radius
            if rng.random() < 0.5:
                light[star] = 255  # saturated: every pixel of the core ties for the peak
            else:
                light += rng.uniform(50, 250) * np.exp(-(np.hypot(yy - at[0], xx - at[1]) ** 2) / 3)[..., None]
            if rng.random() < 0.7:
                neighbours[k] |= ndimage.binary_dilation(star, iterations=int(rng.integers(0, 3)))
        images[k] = np.clip(np.rint(light), 0, 255).astype(np.uint8)
        height, width = (size, size) if rng.random() < 0.6 else rng.integers(size // 3, size + 1, 2)
        areas[k] = image_area(int(height), int(width), size)
        images[k][~areas[k]] = 0  # padding is black and never changes
    masks &= areas
    neighbours &= ~masks
    masks[1] = False  # no region: empty_object
    masks[2] = areas[2]  # the region is the whole image: no_background
    masks[3], areas[3] = ~np.eye(size, dtype=bool) & areas[3], areas[3]  # a background of one diagonal line
    strip = np.zeros((size, size), bool)
    strip[:, :3] = True  # 3 px of background: no 8 or 4 px window fits
    masks[4] = ~strip & areas[4]
    masks[5, :, 5:] = True  # 5 px of background: 4 px windows
    masks[5] &= areas[5]
    ids = [f"img-{seed}-{k}" for k in range(n)]
    return images, masks, areas, neighbours, ids


def random_batch(seed: int, n: int = 24, size: int = 48) -> tuple[np.ndarray, ...]:
    """Unstructured images and regions: uniform noise, blobs of thresholded smoothed noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    blobs = ndimage.gaussian_filter(rng.normal(0, 1, (n, size, size)), (0, 3, 3))
    masks = blobs > np.array([np.quantile(blob, q) for blob, q in zip(blobs, rng.uniform(0.5, 0.95, n))])[:, None, None]
    neighbours = (blobs < np.quantile(blobs, 0.1)) & ~masks
    areas = np.ones_like(masks)
    areas[::3, :, : size // 4] = False
    return images, masks, areas, neighbours, [f"r{seed}-{k}" for k in range(n)]


def assert_same_views(got: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> None:
    for new, old in zip(got, expected):
        assert new.dtype == old.dtype and new.shape == old.shape
        assert (new == old).all()


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize("with_neighbours", [False, True])
def test_the_batched_probes_are_the_image_by_image_ones_bit_for_bit(fill: str, control: str,
                                                                    with_neighbours: bool) -> None:  # fmt: skip
    """Every view, and every state, of the frozen image-by-image implementation, for every fill and
    control, with and without neighbour segments, at radii that change the distance's integer type."""
    states = set()
    for (images, masks, areas, neighbours, ids), radius in [(structured_batch(7), 8.0), (random_batch(8), 12.7)]:
        others = neighbours if with_neighbours else None
        expected = reference_probe_images(images, masks, areas, ids, fill, radius, 3, control, others)
        got = probe_images(images, masks, areas, ids, fill, radius, 3, control, others)
        assert_same_views(got[:3], expected[:3])
        assert got[3].tolist() == expected[3].tolist()
        states |= set(got[3].tolist())
    assert states == {STATE_OK, STATE_EMPTY_OBJECT, STATE_NO_BACKGROUND}


@pytest.mark.parametrize("radius", [0.0, 1.5, 2.5, 4.0, 6.4, 11.0, 40.0])
def test_the_batched_probes_match_at_every_radius(radius: float) -> None:
    images, masks, areas, neighbours, ids = structured_batch(int(radius * 10), n=24)
    for others in (None, neighbours):
        expected = reference_probe_images(images, masks, areas, ids, "sky", radius, 0, "refill", others)
        got = probe_images(images, masks, areas, ids, "sky", radius, 0, "refill", others)
        assert_same_views(got[:3], expected[:3])
        assert got[3].tolist() == expected[3].tolist()


def test_the_batched_probes_match_in_chunks_and_where_peaks_tie(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch cut into chunks gives the same views; components whose brightest value is reached both
    within and beyond 2 px of the region are decided by ndimage.maximum_position, as before."""
    images, masks, areas, neighbours, ids = structured_batch(11, n=48)
    expected = reference_probe_images(images, masks, areas, ids, "sky", 8.0, 5, "refill")
    calls = []
    monkeypatch.setattr(interventions, "CHUNK_PIXELS", 5 * SIZE * SIZE)
    spy = ndimage.maximum_position
    monkeypatch.setattr(interventions.ndimage, "maximum_position", lambda *a, **k: calls.append(1) or spy(*a, **k))
    got = probe_images(images, masks, areas, ids, "sky", 8.0, 5, "refill")
    assert_same_views(got[:3], expected[:3])
    assert got[3].tolist() == expected[3].tolist()
    assert calls  # the tied peaks were there, and were asked about


def test_the_single_image_functions_are_the_reference_ones() -> None:
    """object_part, sky_mask, fill_region and resample_sky, used image by image (backgrounds.py), also
    for float images (the per-pixel path) and an image whose region is empty."""
    images, masks, areas, neighbours, _ = structured_batch(5, n=16)
    for k in range(len(images)):
        for image in (images[k], images[k].astype(np.float64)):
            part = object_part(image, masks[k], areas[k], 8.0, neighbours[k])
            assert (part == reference_object_part(image, masks[k], areas[k], 8.0, neighbours[k])).all()
            background = areas[k] & ~part
            if background.any():
                assert (sky_mask(image, background) == reference_sky_mask(image, background)).all()
        background = areas[k] & ~reference_object_part(images[k], masks[k], areas[k], 8.0)
        if not background.any() or not masks[k].any():
            continue
        sky = reference_sky_mask(images[k], background)
        for fill in FILLS:
            got = fill_region(images[k], background, sky, fill, np.random.default_rng(k), 8.0)
            assert (got == reference_fill_region(images[k], background, sky, fill, np.random.default_rng(k), 8.0)).all()
        got = resample_sky(images[k], masks[k], sky, np.random.default_rng(k))
        assert (got == reference_resample_sky(images[k], masks[k], sky, np.random.default_rng(k))).all()


def test_the_histogram_levels_are_np_medians() -> None:
    """sky_levels reads medians and MADs from histograms: the same float32 numbers as sky_level's np.median."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 16, 16, 3), dtype=np.uint8)
    images[:10] //= 40  # few distinct values: many ties
    images[10:12] = 7  # constant
    masks = rng.random((30, 16, 16)) < rng.uniform(0.003, 1.0, (30, 1, 1))
    masks[:, 0, 0] = True  # at least one pixel
    masks[12, :, :] = False
    masks[12, 3, 4:6] = True  # two pixels: the mean of two
    median, sigma = sky_levels(images, masks)
    for k in range(len(images)):
        expected = sky_level(images[k][masks[k]].astype(np.float32))
        assert median.dtype == sigma.dtype == np.float32
        assert (median[k] == expected[0]).all() and (sigma[k] == expected[1]).all()


@pytest.mark.parametrize("reach", [2, 8, 12, 70])
def test_the_squared_distances_are_the_distance_transforms_within_reach(reach: int) -> None:
    rng = np.random.default_rng(reach)
    blobs = ndimage.gaussian_filter(rng.normal(0, 1, (12, 40, 56)), (0, 2, 2))
    features = (
        blobs > np.array([np.quantile(blob, q) for blob, q in zip(blobs, rng.uniform(0.6, 0.999, 12))])[:, None, None]
    )
    features[0] = False  # nothing to be near: as far as can be
    features[1] = False
    features[1, 39, 55] = True  # one pixel in a corner
    got = squared_distances(features, reach).astype(np.int64)
    far = (reach + 1) ** 2
    assert (got[0] >= far).all()
    for k in range(1, len(features)):
        exact = np.rint(ndimage.distance_transform_edt(~features[k]) ** 2).astype(np.int64)
        within = exact < far
        assert (got[k][within] == exact[within]).all() and (got[k][~within] >= far).all()
