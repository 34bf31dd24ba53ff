"""Near-duplicates on real images: M13's star stamps and LFW's faces (packages' own data), each with
copies planted under a flip, a quarter turn, new noise or JPEG re-compression; the same images without
the copies are the counterfactual (no pair). Every found pair is checked against brute force."""

import io

import numpy as np
import pandas as pd
import pytest
import skimage.data
from PIL import Image

from saliency_audit.data.near_duplicates import (
    COLUMNS,
    ROUNDING,
    crossing_pairs,
    descriptors,
    distances,
    near_duplicate_table,
    near_pairs,
)

THRESHOLD = 0.15  # the schema's default


def faces(count: int = 100) -> np.ndarray:
    """LFW's 100 faces, then its 100 non-faces (25 px, real photographs), grey, padded to 32 px like the stamps."""
    grey = (skimage.data.lfw_subset()[:count] * 255).round().astype(np.uint8)
    return np.pad(grey, ((0, 0), (4, 3), (4, 3)))[..., None].repeat(3, axis=3)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def planted(images: np.ndarray, seed: int) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """``images`` with five copies appended: flipped, turned, re-noised (2 grey levels), re-compressed, as is."""
    rng = np.random.default_rng(seed)
    sources = rng.choice(len(images), 5, replace=False)
    noisy = images[sources[2]].astype(float) + rng.normal(0, 2.0, images[0].shape)
    copies = [
        images[sources[0]][:, ::-1],
        np.rot90(images[sources[1]], 1, axes=(0, 1)),
        np.clip(noisy.round(), 0, 255).astype(np.uint8),
        jpeg(images[sources[3]], 75),
        images[sources[4]],
    ]
    truth = {(int(s), len(images) + k) for k, s in enumerate(sources)}
    return np.concatenate([images, np.stack(copies)]), truth


def brute_force(described: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    a, b = np.triu_indices(len(described), 1)
    d = distances(described, a, b)
    return set(zip(a[d <= threshold].tolist(), b[d <= threshold].tolist()))


@pytest.mark.parametrize("source", ["m13", "faces"])
def test_planted_copies_of_real_images_are_the_only_pairs(source: str, m13_stamps: tuple[np.ndarray, ...]) -> None:
    images = m13_stamps[0] if source == "m13" else faces()
    assert near_pairs(descriptors(images), THRESHOLD).empty  # the counterfactual: no copy, no pair
    with_copies, truth = planted(images, seed=len(images))
    described = descriptors(with_copies)
    pairs = near_pairs(described, THRESHOLD)
    assert set(zip(pairs["a"], pairs["b"])) == truth == brute_force(described, THRESHOLD)
    assert (pairs["a"] < pairs["b"]).all() and pairs["distance"].between(0, THRESHOLD).all()


def test_the_search_finds_what_brute_force_finds_at_any_threshold() -> None:
    # LFW's non-faces (flat patches of background) and the padding bring thousands of pairs within 0.6
    described = descriptors(faces(200))
    for threshold, at_least in ((0.3, 1), (0.6, 1000)):
        pairs = near_pairs(described, threshold)
        expected = brute_force(described, threshold)
        found = set(zip(pairs["a"], pairs["b"]))
        # each pair at the threshold is found with probability 0.995, closer ones more surely
        assert len(expected) >= at_least and found <= expected and len(found) >= 0.99 * len(expected)
        d = distances(described, pairs["a"].to_numpy(), pairs["b"].to_numpy())
        np.testing.assert_allclose(pairs["distance"], d)


def test_distance_is_that_of_the_thumbnails_correlation_and_ignores_flips_and_turns(
    m13_stamps: tuple[np.ndarray, ...],
) -> None:
    stamps = m13_stamps[0][:2]
    turned = np.stack([np.rot90(stamps[0], 3, axes=(0, 1))[::-1], stamps[1]])
    described = descriptors(np.concatenate([stamps, turned]))
    np.testing.assert_allclose(distances(described, np.array([0]), np.array([2])), 0.0, atol=1e-3)
    grey = stamps.mean(axis=3)  # 32 px stamps: the 32 px thumbnail is the grey image itself
    turns = [np.rot90(g, k) for g in (grey[1], grey[1].T) for k in range(4)]  # the eight orientations
    r = max(np.corrcoef(grey[0].ravel(), g.ravel())[0, 1] for g in turns)
    np.testing.assert_allclose(distances(described, np.array([0]), np.array([1])), np.sqrt(2 * (1 - r)), atol=1e-4)
    np.testing.assert_allclose(
        distances(described, np.array([0, 1]), np.array([1, 0])),
        distances(described, np.array([1, 0]), np.array([0, 1])),
        rtol=1e-5,
    )


def test_threshold_zero_lists_exact_copies_flips_and_turns_only(m13_stamps: tuple[np.ndarray, ...]) -> None:
    stamps = m13_stamps[0][:20]
    copies = np.stack([stamps[3], stamps[5][::-1], np.rot90(stamps[7], 2, axes=(0, 1))])
    near = stamps[9].copy()
    near[0, 0] ^= 1  # one grey level in one pixel: no longer the same picture
    pairs = near_pairs(descriptors(np.concatenate([stamps, copies, near[None]])), 0.0)
    assert pairs[["a", "b"]].to_numpy().tolist() == [[3, 20], [5, 21], [7, 22]]
    assert (pairs["distance"] <= ROUNDING).all()


def test_threshold_zero_finds_flipped_and_turned_copies_of_colour_photographs() -> None:
    """Colour bands average to fractions whose box sums round differently once flipped: still copies."""
    photo = skimage.data.astronaut()  # 512 x 512 RGB
    crops = np.stack([photo[y : y + 64, x : x + 64] for y in range(0, 448, 64) for x in range(0, 448, 64)])
    copies = np.stack([crops[3][:, ::-1], np.rot90(crops[10], 1, axes=(0, 1)), crops[20][::-1, ::-1]])
    pairs = near_pairs(descriptors(np.concatenate([crops, copies])), 0.0)
    assert pairs[["a", "b"]].to_numpy().tolist() == [[3, 49], [10, 50], [20, 51]]


def test_blank_images_are_no_ones_duplicates() -> None:
    images = np.zeros((4, 32, 32, 3), np.uint8)
    images[1:3] = 200  # two flat images: nothing to compare
    images[3, 10:20, 10:20] = 255
    described = descriptors(images)
    assert not described[:3].any()
    assert near_pairs(described, 2.0).empty


def test_the_table_names_ids_and_splits_and_puts_crossing_pairs_first() -> None:
    labels = pd.DataFrame({"id": ["x", "y", "z", "w"], "split": ["train", "valid", "train", "train"]})
    pairs = pd.DataFrame({"a": [0, 0], "b": [2, 1], "distance": [0.01, 0.1]})
    table = near_duplicate_table(pairs, labels)
    assert list(table.columns) == COLUMNS
    assert table.to_dict("records") == [
        {"id_a": "x", "id_b": "y", "split_a": "train", "split_b": "valid", "distance": 0.1},
        {"id_a": "x", "id_b": "z", "split_a": "train", "split_b": "train", "distance": 0.01},
    ]
    assert crossing_pairs(table) == 1
