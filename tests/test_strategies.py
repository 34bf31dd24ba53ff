"""Strategy clustering recovers planted families of maps, with a sparse graph."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from saliency_audit.audit.map_geometry import MapGeometry
from saliency_audit.saliency.strategies import (
    EDGE_RINGS,
    kmeans_clusters,
    knn_affinity,
    map_features,
    object_features,
    spectral_clusters,
)

PATCHES_8 = MapGeometry((3.5, 3.5), (8.0, 8.0))  # 8 x 8 cells of 8 px blocks of a 64 px image

CLUSTERS = {"k_neighbours": 10, "max_clusters": 8, "seed": 0}  # saliency.clusters as the demo runs it


def blob(cy: float, cx: float, side: int = 8, width: float = 1.0) -> np.ndarray:
    yy, xx = np.mgrid[0:side, 0:side]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2))


def planted_maps(n: int, families: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Family 0 looks at the centre; family 1 also at a point 3 cells out, at a random angle."""
    rng = np.random.default_rng(seed)
    maps, truth = [], []
    for i in range(n):
        family = i % families
        map_ = blob(*(3.5 + rng.normal(0, 0.3, 2)), width=1.2)
        if family == 1:
            angle = rng.uniform(0, 2 * np.pi)
            map_ = 0.4 * map_ + blob(3.5 + 3 * np.sin(angle), 3.5 + 3 * np.cos(angle), width=0.7)
        maps.append(map_ * rng.uniform(0.5, 2.0) + rng.uniform(0, 0.05, (8, 8)))
        truth.append(family)
    return np.array(maps, dtype=np.float32), np.array(truth)


@pytest.mark.parametrize("n", [60, 600])
def test_two_planted_strategies_are_two_clusters(n: int) -> None:
    maps, truth = planted_maps(n, families=2)
    result = spectral_clusters(map_features(maps, "radial", PATCHES_8, 64), **CLUSTERS)
    assert result.n_clusters == 2
    assert adjusted_rand_score(truth, result.labels) == pytest.approx(1.0)


def test_one_strategy_is_one_cluster() -> None:
    maps, _ = planted_maps(400, families=1)
    result = spectral_clusters(map_features(maps, "radial", PATCHES_8, 64), **CLUSTERS)
    assert result.n_clusters == 1
    assert (result.labels == 0).all()


def test_map_features_separate_fixed_positions() -> None:
    """The plain SpRAy features: a cue always in the left vs always in the right column."""
    rng = np.random.default_rng(3)
    left = [blob(3.5, 1.0) + rng.uniform(0, 0.05, (8, 8)) for _ in range(100)]
    right = [blob(3.5, 6.0) + rng.uniform(0, 0.05, (8, 8)) for _ in range(100)]
    result = spectral_clusters(map_features(np.array(left + right), "map", PATCHES_8, 64), **CLUSTERS)
    assert adjusted_rand_score([0] * 100 + [1] * 100, result.labels) == pytest.approx(1.0)


def test_features_are_normalised_and_empty_maps_stay_zero() -> None:
    maps = np.stack([blob(3.5, 3.5) * 7, np.zeros((8, 8)), -np.ones((8, 8))]).astype(np.float32)
    for kind in ("radial", "map"):
        features = map_features(maps, kind, PATCHES_8, 64)
        assert features[0].sum() == pytest.approx(1.0)
        assert not features[1:].any()
    with pytest.raises(ValueError, match="saliency.clusters.features"):
        map_features(maps, "polar", PATCHES_8, 64)


def test_affinity_is_sparse_and_symmetric() -> None:
    maps, _ = planted_maps(500, families=2)
    affinity = knn_affinity(map_features(maps, "radial", PATCHES_8, 64), k=10)
    assert affinity.nnz <= 2 * 10 * 500
    assert abs(affinity - affinity.T).max() == 0
    assert affinity.diagonal().sum() == 0


def test_labels_are_numbered_by_size() -> None:
    maps, truth = planted_maps(300, families=2)
    keep = np.flatnonzero((truth == 0) | (np.arange(300) % 4 == 1))  # 150 of family 0, 75 of family 1
    result = spectral_clusters(map_features(maps[keep], "radial", PATCHES_8, 64), **CLUSTERS)
    assert np.bincount(result.labels).tolist() == [150, 75]


def test_tiny_groups_are_one_cluster() -> None:
    result = spectral_clusters(np.ones((2, 4)), **CLUSTERS)
    assert result.n_clusters == 1 and result.labels.tolist() == [0, 0]


def test_object_features_are_shares_on_the_object_and_in_rings_from_its_edge() -> None:
    region = np.zeros((1, 32, 32), dtype=bool)
    region[0, 11:21, 11:21] = True  # a 10 px square
    maps = np.zeros((4, 32, 32))
    maps[0, 11:21, 11:21] = 1.0  # all on the object
    maps[1, 15, 22] = 2.0  # 2 px right of the edge: the first ring
    maps[1, 15, 15] = 2.0
    maps[2, 15, 30] = 5.0  # 10 px off: beyond the rings' last edge
    maps[3, 15, 15] = -1.0  # no positive mass
    features = object_features(maps, np.repeat(region, 4, axis=0))
    assert features.shape == (4, len(EDGE_RINGS) + 1)
    np.testing.assert_allclose(features[0], np.eye(len(EDGE_RINGS) + 1)[0])
    np.testing.assert_allclose(features[1], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(features[2], [0.0, 0.0, 1.0])
    assert not features[3].any()
    assert not object_features(maps[:1], np.zeros((1, 32, 32), dtype=bool)).any()  # no region: no features


def test_kmeans_keeps_one_cluster_for_too_few_maps_and_numbers_by_size() -> None:
    rng = np.random.default_rng(1)
    few = kmeans_clusters(rng.uniform(size=(8, 3)), 8, seed=0)
    assert few.n_clusters == 1 and (few.labels == 0).all()
    two = np.concatenate([rng.normal(0, 0.05, (150, 3)), rng.normal(1, 0.05, (60, 3))])
    result = kmeans_clusters(two, 8, seed=0)
    assert result.n_clusters == 2 and np.bincount(result.labels).tolist() == [150, 60]
    assert result.criterion[0] > result.criterion[-1]  # the silhouette of k = 2 beats the Gaussian reference
