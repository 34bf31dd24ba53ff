import numpy as np
import pytest
from sklearn import metrics as sk

from saliency_audit.model.metrics import binary_auc, classification_metrics, regression_metrics, roc_curve


def random_probs(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, np.round(probs, 2)  # rounding makes ties


@pytest.mark.parametrize("seed", range(3))
def test_binary_metrics_equal_scikit_learn(seed: int) -> None:
    labels, probs = random_probs(300, 2, seed)
    got = classification_metrics(labels, probs)
    predicted = probs.argmax(1)
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted))
    assert got["roc_auc"] == pytest.approx(sk.roc_auc_score(labels, probs[:, 1]))
    assert got["f1"] == pytest.approx(sk.f1_score(labels, predicted))
    assert got["confusion_matrix"] == sk.confusion_matrix(labels, predicted).tolist()


@pytest.mark.parametrize("seed", range(3))
def test_multiclass_metrics_equal_scikit_learn(seed: int) -> None:
    labels, probs = random_probs(400, 4, seed)
    probs = probs / probs.sum(1, keepdims=True)
    got = classification_metrics(labels, probs)
    predicted = probs.argmax(1)
    assert got["roc_auc"] == pytest.approx(sk.roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    assert got["f1"] == pytest.approx(sk.f1_score(labels, predicted, average="macro"))
    assert got["confusion_matrix"] == sk.confusion_matrix(labels, predicted).tolist()


def test_roc_curve_equals_scikit_learn() -> None:
    labels, probs = random_probs(200, 2, 7)
    fpr, tpr = roc_curve(labels == 1, probs[:, 1])
    sk_fpr, sk_tpr, _ = sk.roc_curve(labels, probs[:, 1], drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)


def test_auc_of_a_single_class_is_nan() -> None:
    assert np.isnan(binary_auc(np.ones(4, dtype=bool), np.arange(4.0)))


@pytest.mark.parametrize("seed", [0, 1])
def test_regression_metrics_equal_scikit_learn_and_astropy(seed: int) -> None:
    from astropy.stats import mad_std
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    rng = np.random.default_rng(seed)
    values = rng.normal(9.0, 0.3, 300)
    predicted = values + rng.standard_t(3, 300) * 0.05 + 0.01
    got = regression_metrics(values, predicted)
    assert got["rmse"] == pytest.approx(np.sqrt(mean_squared_error(values, predicted)))
    assert got["mae"] == pytest.approx(mean_absolute_error(values, predicted))
    assert got["r2"] == pytest.approx(r2_score(values, predicted))
    assert got["nmad"] == pytest.approx(mad_std(predicted - values), rel=1e-4)
    assert got["bias"] == pytest.approx(np.mean(predicted - values))
