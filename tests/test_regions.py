"""Object regions: automatic segmentation (threshold, deblended segments) on synthetic cutouts, mask files,
catalog circles and ellipses."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from saliency_audit.data.image_io import center_crop_pad, image_area
from saliency_audit.data.regions import (
    disk_mask,
    object_regions,
    regions_and_neighbours,
    segment_regions,
    threshold_regions,
)

SIZE = 48
# saliency.object.nsigma and image.max_pixels as a run with the schema's defaults passes them
NSIGMA = 2.0
MAX_PIXELS = 25_000_000
THRESHOLD = {"method": "threshold", "nsigma": NSIGMA}
# saliency.object.npixels and .contrast: the schema's defaults
SEGMENTS = {"method": "segments", "nsigma": NSIGMA, "npixels": 5, "contrast": 0.001}


def galaxy_cutouts(n: int, seed: int = 0, neighbour: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Noisy cutouts of a centred Gaussian blob (and an off-centre neighbour), with the true blob masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    images, truths = [], []
    for _ in range(n):
        sigma = rng.uniform(3, 5)
        cy, cx = (SIZE - 1) / 2 + rng.uniform(-2, 2, 2)
        blob = 180 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        if neighbour:
            blob += 200 * np.exp(-((yy - 4) ** 2 + (xx - 43) ** 2) / (2 * 1.5**2))
        image = np.clip(20 + blob[..., None] + rng.normal(0, 6, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
        images.append(image)
        # the isophote at twice the sky noise after smoothing: 6 / sqrt(3) for the channel mean,
        # times 1 / (2 sqrt(pi)) for a Gaussian of 1 px
        truths.append(180 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)) > 2 * 6 / np.sqrt(3) / 3.545)
    return np.stack(images), np.stack(truths)


def galaxy_and_touching_star(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy cutouts of a centred Gaussian galaxy with a bright star 9 px from its centre, well inside
    its faint isophote; the galaxy's own pixels (its isophote, where it outshines the star) and the star's."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    images, truths, stars = [], [], []
    for _ in range(n):
        sigma, angle = rng.uniform(3.5, 4.5), rng.uniform(0, 2 * np.pi)
        cy, cx = (SIZE - 1) / 2 + rng.uniform(-1, 1, 2)
        sy, sx = round(cy + 9 * np.sin(angle)), round(cx + 9 * np.cos(angle))
        galaxy = 180 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        star = 200 * np.exp(-((yy - sy) ** 2 + (xx - sx) ** 2) / (2 * 1.2**2))
        noise = rng.normal(0, 6, (SIZE, SIZE, 3))
        images.append(np.clip(20 + (galaxy + star)[..., None] + noise, 0, 255).astype(np.uint8))
        truths.append((galaxy > 2 * 6 / np.sqrt(3) / 3.545) & (galaxy > star))  # the isophote of galaxy_cutouts
        stars.append((sy, sx))
    return np.stack(images), np.stack(truths), np.array(stars)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_threshold_finds_the_centred_object_and_not_the_neighbour() -> None:
    images, truths = galaxy_cutouts(12)
    masks = threshold_regions(images, NSIGMA)
    scores = [iou(m, t) for m, t in zip(masks, truths)]
    assert min(scores) > 0.75, scores
    assert not masks[:, 4, 43].any()  # the neighbour is a separate component


def test_threshold_keeps_the_component_nearest_the_centre() -> None:
    rng = np.random.default_rng(1)
    image = np.clip(20 + rng.normal(0, 4, (SIZE, SIZE, 3)), 0, 255)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    image += (150 * np.exp(-((yy - 30) ** 2 + (xx - 30) ** 2) / 8.0))[..., None]  # off-centre, nearest
    image += (150 * np.exp(-((yy - 40) ** 2 + (xx - 8) ** 2) / 8.0))[..., None]
    mask = threshold_regions(np.clip(image, 0, 255).astype(np.uint8)[None], NSIGMA)[0]
    assert mask[30, 30] and not mask[40, 8]


def test_threshold_gives_an_empty_mask_for_pure_sky() -> None:
    sky = np.random.default_rng(2).normal(30, 5, (2, SIZE, SIZE, 3)).clip(0, 255).astype(np.uint8)
    assert not threshold_regions(sky, NSIGMA).any()


def test_threshold_fills_holes() -> None:
    images, _ = galaxy_cutouts(1, neighbour=False)
    images[0, 22:26, 22:26] = 20  # a dark lane through the middle
    mask = threshold_regions(images, NSIGMA)[0]
    assert mask[22:26, 22:26].all()


def test_segments_keep_a_touching_star_out_of_the_galaxy_which_threshold_merges() -> None:
    images, truths, stars = galaxy_and_touching_star(12)
    star = np.arange(len(images)), stars[:, 0], stars[:, 1]
    assert threshold_regions(images, NSIGMA)[star].all()  # counterfactual: one region, galaxy and star
    masks, problems = object_regions(SEGMENTS, list("abcdefghijkl"), images, pd.DataFrame(), None, MAX_PIXELS)
    objects, neighbours = segment_regions(images, NSIGMA, 5, 0.001)
    np.testing.assert_array_equal(masks, objects)
    assert problems == [] and not masks[star].any() and neighbours[star].all()
    assert not (objects & neighbours).any() and objects[:, 23:25, 23:25].all()
    scores = [iou(m, t) for m, t in zip(objects, truths)]
    assert min(scores) > 0.7, scores
    # the deblending does it: a contrast of 1 splits nothing, and the star stays in the galaxy's segment
    undeblended, _ = object_regions({**SEGMENTS, "contrast": 1.0}, list("abcdefghijkl"), images, pd.DataFrame(),
                                    None, MAX_PIXELS)  # fmt: skip
    assert undeblended[star].all()


def test_segments_take_the_segment_nearest_the_centre_when_none_covers_it() -> None:
    rng = np.random.default_rng(1)
    image = np.clip(20 + rng.normal(0, 4, (SIZE, SIZE, 3)), 0, 255)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    image += (150 * np.exp(-((yy - 30) ** 2 + (xx - 30) ** 2) / 8.0))[..., None]  # off-centre, nearest
    image += (150 * np.exp(-((yy - 40) ** 2 + (xx - 8) ** 2) / 8.0))[..., None]
    objects, neighbours = segment_regions(np.clip(image, 0, 255).astype(np.uint8)[None], NSIGMA, 5, 0.001)
    assert objects[0, 30, 30] and not objects[0, 40, 8] and neighbours[0, 40, 8]


def test_segments_find_no_object_in_pure_sky() -> None:
    sky = np.random.default_rng(2).normal(30, 5, (2, SIZE, SIZE, 3)).clip(0, 255).astype(np.uint8)
    objects, _ = segment_regions(sky, NSIGMA, 5, 0.001)
    assert not objects.any()
    assert not segment_regions(np.zeros((1, SIZE, SIZE, 3), np.uint8), NSIGMA, 5, 0.001)[1].any()


def test_neighbours_are_every_segment_but_the_object() -> None:
    images, _, stars = galaxy_and_touching_star(3, seed=4)
    ids = ["a", "b", "c"]
    objects, problems = object_regions(SEGMENTS, ids, images, pd.DataFrame(), None, MAX_PIXELS)
    same, neighbours, _ = regions_and_neighbours(SEGMENTS, ids, images, pd.DataFrame(), None, MAX_PIXELS)
    np.testing.assert_array_equal(same, objects)
    assert neighbours.shape == objects.shape and neighbours.dtype == bool
    assert not (objects & neighbours).any() and neighbours[np.arange(3), stars[:, 0], stars[:, 1]].all()
    # the other methods know no other sources: their region, no neighbours
    threshold = {**SEGMENTS, "method": "threshold"}
    region, none, _ = regions_and_neighbours(threshold, ids, images, pd.DataFrame(), None, MAX_PIXELS)
    np.testing.assert_array_equal(region, object_regions(threshold, ids, images, pd.DataFrame(), None, MAX_PIXELS)[0])
    assert not none.any()


def test_segments_never_include_the_padding_of_a_small_image() -> None:
    images, _, _ = galaxy_and_touching_star(2, seed=5)
    small = images[:, 7:41, 7:41]  # 34 x 34 cutouts of the same galaxies and stars
    padded = np.stack([center_crop_pad(image, SIZE) for image in small])
    sizes = [(34, 34)] * 2
    objects, neighbours, problems = regions_and_neighbours(SEGMENTS, ["a", "b"], padded, pd.DataFrame(), sizes,
                                                           MAX_PIXELS)  # fmt: skip
    area = image_area(34, 34, SIZE)
    assert problems == [] and objects.any(axis=(1, 2)).all() and not ((objects | neighbours) & ~area).any()
    alone, others = segment_regions(small, NSIGMA, 5, 0.001)  # as if never padded
    np.testing.assert_array_equal(objects[:, 7:41, 7:41], alone)
    np.testing.assert_array_equal(neighbours[:, 7:41, 7:41], others)


def test_mask_files_are_read_cropped_and_missing_ones_reported(tmp_path: Path) -> None:
    big = np.zeros((SIZE + 10, SIZE + 10), dtype=np.uint8)
    big[20:30, 25:35] = 255  # becomes rows 15:25, cols 20:30 after the 5 px centre crop
    Image.fromarray(big).save(tmp_path / "a.png")
    spec = {"method": "masks", "masks": str(tmp_path / "{id}.png")}
    images = np.zeros((2, SIZE, SIZE, 3), dtype=np.uint8)
    masks, problems = object_regions(spec, ["a", "b"], images, pd.DataFrame(), [(SIZE + 10, SIZE + 10)] * 2, MAX_PIXELS)
    expected = np.zeros((SIZE, SIZE), dtype=bool)
    expected[15:25, 20:30] = True
    np.testing.assert_array_equal(masks[0], expected)
    assert not masks[1].any()
    assert [(p, code) for p, code, _ in problems] == [(1, "missing_mask")]
    assert "b.png" in problems[0][2]


def test_circle_from_a_petrosian_radius() -> None:
    catalog = pd.DataFrame({"petroR90_r": [3.96, np.nan, -1.0]}, index=["a", "b", "c"])
    spec = {"method": "circle", "radius_column": "petroR90_r", "pixel_scale": 0.396}
    masks, problems = object_regions(
        spec, ["a", "b", "c"], np.zeros((3, SIZE, SIZE, 3), np.uint8), catalog, None, MAX_PIXELS
    )
    assert masks[0].sum() == pytest.approx(np.pi * 10.0**2, rel=0.05)  # 3.96" / 0.396"/px = 10 px
    assert masks[0][SIZE // 2, SIZE // 2]
    assert [(p, code) for p, code, _ in problems] == [(1, "missing_region_value"), (2, "invalid_region_value")]
    assert not masks[1:].any()


def test_a_missing_region_column_is_a_problem_of_every_image() -> None:
    spec = {"method": "circle", "radius_column": "petroR50_r", "pixel_scale": 0.396}
    masks, problems = object_regions(spec, ["a", "b"], np.zeros((2, SIZE, SIZE, 3), np.uint8), pd.DataFrame(
        {"petroR90_r": [1.0, 2.0]}, index=["a", "b"]), None, MAX_PIXELS)  # fmt: skip
    assert {code for _, code, _ in problems} == {"missing_region_column"}
    assert "petroR50_r" in problems[0][2] and "saliency.object.radius_column" in problems[0][2]
    assert not masks.any()


def test_ellipse_geometry_and_orientation() -> None:
    flat = disk_mask(41, 20, 20, 12, 4, 0.0)
    assert flat[20, 8] and flat[20, 32] and not flat[12, 20]  # long along x
    upright = disk_mask(41, 20, 20, 12, 4, 90.0)
    assert upright[8, 20] and upright[32, 20] and not upright[20, 12]  # long along y
    diagonal = disk_mask(41, 20, 20, 12, 3, 45.0)
    assert diagonal[20 - 7, 20 + 7] and not diagonal[20 + 7, 20 + 7]  # counter-clockwise on screen: up and right
    assert flat.sum() == pytest.approx(np.pi * 12 * 4, rel=0.05)


def test_ellipse_coordinates_refer_to_the_original_image(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((SIZE + 20, SIZE + 20, 3), np.uint8)).save(tmp_path / "a.png")
    catalog = pd.DataFrame(
        {"x": [40.0], "y": [30.0], "a": [5.0], "b": [5.0], "theta": [0.0], "image": [str(tmp_path / "a.png")]},
        index=["a"],
    )
    spec = {"method": "ellipse", "columns": {"x": "x", "y": "y", "a": "a", "b": "b", "theta": "theta"}}
    masks, problems = object_regions(
        spec, ["a"], np.zeros((1, SIZE, SIZE, 3), np.uint8), catalog, [(SIZE + 20,) * 2], MAX_PIXELS
    )
    assert problems == []
    rows, cols = np.nonzero(masks[0])
    assert (rows.mean(), cols.mean()) == pytest.approx((20.0, 30.0))  # the 68 px file loses 10 px a side


def test_a_mask_of_another_size_than_its_image_is_a_problem(tmp_path: Path) -> None:
    for name, shape in (("a", (SIZE * 2, SIZE * 2)), ("b", (SIZE - 8, SIZE)), ("c", (SIZE - 8, SIZE - 8))):
        mask = np.zeros(shape, dtype=np.uint8)
        mask[shape[0] // 2 - 4 : shape[0] // 2 + 4, shape[1] // 2 - 4 : shape[1] // 2 + 4] = 255
        Image.fromarray(mask).save(tmp_path / f"{name}.png")
    spec = {"method": "masks", "masks": str(tmp_path / "{id}.png")}
    sizes = [(SIZE, SIZE), (SIZE, SIZE), (SIZE - 8, SIZE - 8)]  # c: a small image and its own small mask
    masks, problems = object_regions(spec, ["a", "b", "c"], np.zeros((3, SIZE, SIZE, 3), np.uint8), pd.DataFrame(),
                                     sizes, MAX_PIXELS)  # fmt: skip
    assert [(p, code) for p, code, _ in problems] == [(0, "mask_size_mismatch"), (1, "mask_size_mismatch")]
    assert f"the mask is {SIZE * 2}x{SIZE * 2}, its image {SIZE}x{SIZE}" in problems[0][2]
    assert not masks[:2].any() and masks[2].sum() == 64


def test_regions_never_include_the_padding_of_a_small_image() -> None:
    images, _ = galaxy_cutouts(2, neighbour=False)
    small = images[:, 9:39, 9:39]  # 30 x 30 cutouts of the same galaxies
    padded = np.stack([center_crop_pad(image, SIZE) for image in small])
    sizes = [(30, 30)] * 2
    area = image_area(30, 30, SIZE)
    masks, problems = object_regions(THRESHOLD, ["a", "b"], padded, pd.DataFrame(), sizes, MAX_PIXELS)
    assert problems == [] and masks.any(axis=(1, 2)).all() and not (masks & ~area).any()
    np.testing.assert_array_equal(masks[:, 9:39, 9:39], threshold_regions(small, NSIGMA))  # as if never padded
    # without the sizes the zero padding is taken for sky, and the region spreads over the image
    assert threshold_regions(padded, NSIGMA)[:, 9:39, 9:39].sum() > masks.sum() * 1.5
    catalog = pd.DataFrame({"r": [25.0, 25.0]}, index=["a", "b"])  # a circle larger than the image
    circles, _ = object_regions({"method": "circle", "radius_column": "r", "pixel_scale": 1.0}, ["a", "b"], padded,
                                catalog, sizes, MAX_PIXELS)  # fmt: skip
    np.testing.assert_array_equal(circles, np.broadcast_to(area, circles.shape))


def test_unknown_method_is_named() -> None:
    with pytest.raises(ValueError, match="saliency.object.method"):
        object_regions({"method": "box"}, ["a"], np.zeros((1, 8, 8, 3), np.uint8), pd.DataFrame(), None, MAX_PIXELS)
