import numpy as np
import pytest
from sklearn.decomposition import PCA

from saliency_audit.audit.moments import Moments
from saliency_audit.audit.pca import fit_pca, spread_sample
from saliency_audit.report.pca_figures import ColourScale


def activations(n: int = 600, f: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 4)) * [5.0, 2.0, 1.0, 0.5]
    return (latent @ rng.normal(size=(4, f)) + rng.normal(scale=0.1, size=(n, f)) + 30.0).astype(np.float32)


def streamed(x: np.ndarray, splits: list[int]) -> Moments:
    """Moments built batch by batch in several shards, then merged, like the workflow does."""
    total = Moments.empty(x.shape[1])
    for shard in np.split(x, splits):
        part = Moments.empty(x.shape[1])
        for batch in np.array_split(shard, 3):
            part = part.merge(Moments.of(batch))
        total = total.merge(part)
    return total


def test_merged_moments_equal_the_whole() -> None:
    x = activations().astype(np.float64)
    moments = streamed(x, [100, 350])
    assert moments.count == len(x)
    np.testing.assert_allclose(moments.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(moments.covariance(), np.cov(x, rowvar=False), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("whiten", [True, False])
@pytest.mark.parametrize("k", [2, 3, 5])
def test_pca_equals_scikit_learn(whiten: bool, k: int) -> None:
    x = activations()
    fit = fit_pca(streamed(x, [250]), k, whiten)
    reference = PCA(n_components=k, whiten=whiten, svd_solver="full").fit(x.astype(np.float64))
    np.testing.assert_allclose(fit.explained_variance, reference.explained_variance_, rtol=1e-6)
    np.testing.assert_allclose(fit.explained_variance_ratio, reference.explained_variance_ratio_, rtol=1e-6)
    np.testing.assert_allclose(fit.components, reference.components_, atol=1e-6)  # same sign convention
    np.testing.assert_allclose(fit.transform(x), reference.transform(x.astype(np.float64)), atol=1e-6)


def test_too_many_components_is_explained() -> None:
    with pytest.raises(ValueError, match="pca.components=30"):
        fit_pca(Moments.of(activations(f=20)), 30, True)


def test_colour_scale_uses_bin_centres_for_predictions() -> None:
    import pandas as pd

    scale = ColourScale.from_target(
        {"bins": [8.1, 8.7, 9.1, 9.3], "labels": ["low", "medium", "high"]}, ["low", "high"]
    )
    np.testing.assert_allclose(scale.class_value(pd.Series(["low", "high"])), [8.4, 9.2])
    assert scale.style()["vmin"] == 8.1 and scale.style()["vmax"] == 9.3
    categorical = ColourScale.from_target({"column": "s"}, ["a", "b"])
    np.testing.assert_array_equal(categorical.class_value(pd.Series(["b", "a"])), [1, 0])


def test_spread_sample_keeps_one_point_per_cell() -> None:
    import pandas as pd

    rng = np.random.default_rng(0)
    points = pd.DataFrame({"pc1": rng.normal(size=2000), "pc2": rng.normal(size=2000)})
    chosen = spread_sample(points, cells=10)
    assert 30 < len(chosen) <= 100
    cell = {}
    for axis in ("pc1", "pc2"):
        lo, hi = np.percentile(points[axis], [1, 99])
        assert chosen[axis].between(lo, hi).all()
        cell[axis] = np.floor((chosen[axis] - lo) / (hi - lo) * 10).clip(0, 9)
    assert not pd.DataFrame(cell).duplicated().any()
