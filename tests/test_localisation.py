"""Localisation statistics on hand-made maps and masks with known answers, and their ranges."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from saliency_audit.audit.map_geometry import MapGeometry, place, pool
from saliency_audit.saliency.localisation import localisation
from saliency_audit.saliency.vocabulary import STATE_EMPTY_MAP, STATE_EMPTY_OBJECT, STATE_OK


def patches(stride: int) -> MapGeometry:
    """Cells that each look at their own stride x stride block (a patchify conv)."""
    return MapGeometry(((stride - 1) / 2,) * 2, (float(stride),) * 2)


def square_mask(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def one(map_: np.ndarray, mask: np.ndarray):
    return localisation(map_[None].astype(np.float32), mask[None], patches(mask.shape[0] // map_.shape[0]))


def test_map_inside_the_object_scores_perfectly() -> None:
    mask = square_mask(8, 2, 2, 4)
    scores = one(mask.astype(float) * 3.0, mask)  # same resolution: upsampling is the identity
    assert scores.energy_in_object[0] == pytest.approx(1.0)
    assert scores.relative_energy[0] == pytest.approx(1.0)
    assert scores.pointing_hit[0] == 1.0
    assert scores.rank_accuracy[0] == pytest.approx(1.0)
    assert scores.cam_total[0] == pytest.approx(48.0)
    assert scores.state[0] == STATE_OK


def test_half_the_mass_outside() -> None:
    mask = square_mask(8, 0, 0, 4)
    map_ = np.zeros((8, 8))
    map_[0, 0] = 1.0  # inside
    map_[7, 7] = 1.0  # outside
    scores = one(map_, mask)
    assert scores.energy_in_object[0] == pytest.approx(0.5)
    # 16 object pixels; the 16 highest are the two ones and 14 zeros, ties broken by position
    assert 0 < scores.rank_accuracy[0] <= 1


def test_negative_values_are_ignored() -> None:
    mask = square_mask(8, 0, 0, 4)
    map_ = -np.ones((8, 8))
    map_[1, 1] = 2.0
    scores = one(map_, mask)
    assert scores.energy_in_object[0] == pytest.approx(1.0)
    assert scores.cam_total[0] == pytest.approx(2.0)


def test_rank_accuracy_counts_the_top_object_sized_pixels() -> None:
    mask = square_mask(4, 0, 0, 2)  # 4 object pixels
    map_ = np.zeros((4, 4))
    map_[0, 0], map_[0, 1] = 4.0, 3.0  # inside
    map_[3, 3], map_[3, 2] = 2.5, 2.0  # outside, ranked 3rd and 4th
    scores = one(map_, mask)
    assert scores.rank_accuracy[0] == pytest.approx(0.5)
    assert scores.energy_in_object[0] == pytest.approx(7.0 / 11.5)


def test_peak_offset_in_object_radii() -> None:
    mask = square_mask(21, 8, 8, 5)  # centroid at (10, 10), area 25
    map_ = np.zeros((21, 21))
    map_[10, 18] = 1.0  # 8 pixels to the right of the centroid
    scores = one(map_, mask)
    assert scores.pointing_hit[0] == 0.0
    assert scores.peak_offset[0] == pytest.approx(8.0 / np.sqrt(25 / np.pi))
    assert scores.energy_in_object[0] == 0.0


def test_object_touching_the_border() -> None:
    mask = square_mask(8, 0, 0, 3)
    map_ = np.zeros((8, 8))
    map_[0, 0] = 1.0
    scores = one(map_, mask)
    assert scores.pointing_hit[0] == 1.0
    assert scores.energy_in_object[0] == pytest.approx(1.0)
    assert scores.peak_offset[0] == pytest.approx(np.hypot(1, 1) / np.sqrt(9 / np.pi))


def test_entropy_is_zero_for_a_point_and_one_for_a_flat_map() -> None:
    mask = square_mask(8, 2, 2, 4)
    point = np.zeros((8, 8))
    point[3, 3] = 5.0
    scores = localisation(np.stack([point, np.ones((8, 8))]).astype(np.float32), np.stack([mask, mask]), patches(1))
    assert scores.entropy[0] == pytest.approx(0.0, abs=1e-6)
    assert scores.entropy[1] == pytest.approx(1.0)


def test_empty_map_and_empty_object_have_their_own_state() -> None:
    mask = square_mask(8, 2, 2, 4)
    scores = localisation(
        np.stack([np.zeros((8, 8)), -np.ones((8, 8)), np.ones((8, 8))]).astype(np.float32),
        np.stack([mask, mask, np.zeros((8, 8), dtype=bool)]),
        patches(1),
    )
    assert scores.state.tolist() == [STATE_EMPTY_MAP, STATE_EMPTY_MAP, STATE_EMPTY_OBJECT]
    assert np.isnan(scores.energy_in_object).all()
    assert np.isnan(scores.relative_energy).all()
    assert scores.cam_total.tolist() == [0.0, 0.0, 64.0]
    assert np.isnan(scores.entropy[:2]).all() and scores.entropy[2] == pytest.approx(1.0)


def test_coarse_map_of_the_object_is_the_reference() -> None:
    """A map that is the object itself at map resolution keeps less than all its mass after
    upsampling (it blurs over the border), yet its relative energy is exactly one."""
    mask = np.zeros((64, 64), dtype=bool)
    yy, xx = np.mgrid[0:64, 0:64]
    mask[np.hypot(yy - 31.5, xx - 31.5) < 10] = True
    coarse = pool(mask[None], patches(8), (8, 8)).numpy()
    scores = localisation(coarse, mask[None], patches(8))
    assert 0.5 < scores.energy_in_object[0] < 0.95
    assert scores.reference_energy[0] == pytest.approx(scores.energy_in_object[0])
    assert scores.relative_energy[0] == pytest.approx(1.0)


def test_a_blurred_but_centred_map_is_not_flagged_while_an_off_object_one_is() -> None:
    """The resolution-aware flag: a coarse map on a small object has a low raw energy but a high
    relative energy; a map on a star outside has both low."""
    mask = np.zeros((64, 64), dtype=bool)
    yy, xx = np.mgrid[0:64, 0:64]
    mask[np.hypot(yy - 31.5, xx - 31.5) < 6] = True
    on_object = np.zeros((8, 8))
    on_object[3:5, 3:5] = 1.0
    on_star = on_object * 0.3
    on_star[0, 7] = 2.0
    scores = localisation(np.stack([on_object, on_star]).astype(np.float32), np.stack([mask, mask]), patches(8))
    assert scores.energy_in_object[0] < 0.7
    assert scores.relative_energy[0] > 0.9
    assert scores.relative_energy[1] < 0.5


def test_patch_placement_is_bilinear_with_half_pixel_centres() -> None:
    up = place(np.array([[[0.0, 1.0]]]), patches(2), (1, 4)).numpy()[0, 0]
    np.testing.assert_allclose(up, [0.0, 0.25, 0.75, 1.0])


def test_maps_and_masks_must_pair() -> None:
    with pytest.raises(ValueError, match="3 maps but 2 masks"):
        localisation(np.zeros((3, 4, 4), np.float32), np.zeros((2, 8, 8), bool), patches(2))


@settings(max_examples=60, deadline=None)
@given(
    maps=arrays(np.float32, (3, 4, 4), elements=st.floats(-5, 5, width=32)),
    masks=arrays(np.bool_, (3, 12, 12)),
)
def test_metrics_stay_in_their_ranges(maps: np.ndarray, masks: np.ndarray) -> None:
    scores = localisation(maps, masks, MapGeometry((0.0, 0.0), (3.0, 3.0)))
    for name in ("energy_in_object", "relative_energy", "pointing_hit", "rank_accuracy", "entropy"):
        values = getattr(scores, name)
        defined = values[~np.isnan(values)]
        assert ((defined >= -1e-6) & (defined <= 1 + 1e-6)).all(), name
    offsets = scores.peak_offset[~np.isnan(scores.peak_offset)]
    assert (offsets >= 0).all()
    assert (scores.cam_total >= 0).all()
    ok = scores.state == STATE_OK
    assert not np.isnan(scores.energy_in_object[ok]).any()
    assert np.isnan(scores.energy_in_object[~ok]).all()
    assert (scores.state[~masks.any(axis=(1, 2))] != STATE_OK).all()


@settings(max_examples=60, deadline=None)
@given(
    maps=arrays(np.float32, (4, 3, 3), elements=st.sampled_from([0.0, 0.5, 1.0, -1.0])),
    masks=arrays(np.bool_, (4, 6, 6)),
)
def test_rank_accuracy_equals_a_stable_walk_from_the_highest_pixel(maps: np.ndarray, masks: np.ndarray) -> None:
    """Few distinct values, so most pixels tie: ties must be taken in pixel order."""
    scores = localisation(maps, masks, patches(2))
    flat = place(maps, patches(2), (6, 6)).numpy().reshape(4, -1)
    for i in range(4):
        k = masks[i].sum()
        if k == 0 or flat[i].sum() <= 0:
            continue
        order = np.argsort(-flat[i], kind="stable")
        expected = masks[i].ravel()[order[:k]].mean()
        assert scores.rank_accuracy[i] == pytest.approx(expected)
