"""Intervention probes: the fills look like the image's empty background, margins and reliance."""

import numpy as np
import pytest
from scipy import ndimage

from saliency_audit.saliency.interventions import (
    background_reliance,
    control_effect,
    fill_region,
    margins,
    object_part,
    probe_images,
    sky_mask,
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
