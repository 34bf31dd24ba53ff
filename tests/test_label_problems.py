"""Likely label problems on real photographs: LFW's 100 faces and 100 non-faces (skimage's own data)
with labels flipped on purpose; the witnesses are an independent model (a logistic regression on the
pixels' principal components, its probabilities out of sample by 5-fold cross-validation) and the
neighbours in that same feature space. The counterfactual is the same images with their true labels."""

import numpy as np
import pandas as pd
import pytest
import skimage.data
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from saliency_audit.audit.label_problems import (
    COLUMNS,
    OUTSIDE,
    class_thresholds,
    confident_other,
    label_problem_table,
    nearest_edges,
    neighbour_votes,
    split_thresholds,
)

CLASSES = ["face", "other"]


@pytest.fixture(scope="module")
def lfw() -> tuple[np.ndarray, np.ndarray]:
    pixels = skimage.data.lfw_subset().reshape(200, -1)
    return PCA(20, random_state=0).fit_transform(pixels), np.repeat([0, 1], 100)


def audit_of(features: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    probs = cross_val_predict(LogisticRegression(max_iter=2000), features, labels, cv=5, method="predict_proba")
    rows = pd.DataFrame(
        {"id": [f"lfw{i}" for i in range(len(labels))], "split": "valid", "class": np.asarray(CLASSES)[labels]}
    )
    return label_problem_table(rows.assign(target=0.0), probs, CLASSES, features)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_flipped_labels_of_real_photographs_are_found(lfw: tuple[np.ndarray, np.ndarray], seed: int) -> None:
    features, truth = lfw
    flipped = np.random.default_rng(seed).choice(len(truth), 10, replace=False)
    labels = truth.copy()
    labels[flipped] = 1 - labels[flipped]
    table = audit_of(features, labels)
    found = {int(i[3:]) for i in table["id"]}
    # measured: 9/10 (one false), 10/10, 10/10, 7/10 (none false)
    assert len(found & set(flipped.tolist())) >= 7 and len(found - set(flipped.tolist())) <= 1
    assert list(table.columns) == COLUMNS
    assert (table["suggested"] != table["label"]).all() and (table["neighbours_suggested"] > 0.5).all()
    assert (table["prob_suggested"] >= table["threshold_suggested"]).all()
    assert table["prob_label"].is_monotonic_increasing


def test_true_labels_give_next_to_nothing(lfw: tuple[np.ndarray, np.ndarray]) -> None:
    features, truth = lfw
    assert len(audit_of(features, truth)) <= 1  # measured: 1 of 200


def test_thresholds_are_per_class_means_and_the_other_class_must_reach_its_own() -> None:
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.4, 0.6], [0.45, 0.55]])
    labels = np.array([0, 0, 1, 1, 0])
    thresholds = class_thresholds(probs, labels)
    np.testing.assert_allclose(thresholds, [(0.9 + 0.7 + 0.45) / 3, (0.8 + 0.6) / 2])
    # image 4 (labelled 0) gives class 1 only 0.55 < 0.7: not confidently of class 1
    assert confident_other(probs, labels, thresholds).tolist() == [-1, -1, -1, -1, -1]
    assert confident_other(probs, np.array([1, 1, 1, 1, 0]), thresholds).tolist() == [0, 0, -1, -1, -1]


def test_each_split_is_held_to_its_own_thresholds() -> None:
    # training probabilities learnt from the labels sit near 1; the valid split's are lower
    train = [[0.99, 0.01]] * 40 + [[0.01, 0.99]] * 40
    valid = [[0.7, 0.3]] * 5 + [[0.3, 0.7]] * 5 + [[0.25, 0.75]]  # the last is labelled 0
    probs = np.array(train + valid)
    labels = np.array([0] * 40 + [1] * 40 + [0] * 5 + [1] * 5 + [0])
    splits = np.array(["train"] * 80 + ["valid"] * 11)
    thresholds = split_thresholds(probs, labels, splits)
    np.testing.assert_allclose(thresholds[0], [0.99, 0.99])
    np.testing.assert_allclose(thresholds[-1], [(0.7 * 5 + 0.25) / 6, 0.7])
    assert confident_other(probs, labels, thresholds)[-1] == 1  # 0.75 reaches the valid split's 0.7
    assert confident_other(probs, labels, class_thresholds(probs, labels))[-1] == -1  # pooled: 0.93, hidden
    rows = pd.DataFrame({"id": [f"i{k}" for k in range(91)], "split": splits, "class": np.array(["a", "b"])[labels],
                         "target": np.nan})  # fmt: skip
    features = np.where(labels == 1, 5.0, 0.0)[:, None] + np.linspace(0, 0.01, 91)[:, None]
    features[-1] = 5.0  # among the class-1 images
    table = label_problem_table(rows, probs, ["a", "b"], features)
    assert table["id"].tolist() == ["i90"] and table["threshold_suggested"].tolist() == pytest.approx([0.7])
    # a split without images of a class falls back to the pooled threshold
    lone = split_thresholds(probs[:41], labels[:41], np.array(["train"] * 40 + ["valid"]))
    np.testing.assert_allclose(lone[-1], class_thresholds(probs[:41], labels[:41]))


def test_neighbours_vote_without_the_image_itself() -> None:
    features = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]])
    votes = neighbour_votes(features, np.array([0, 0, 1, 1, 1, 1]), 2, k=2)
    np.testing.assert_allclose(votes[0], [0.5, 0.5])  # neighbours 1 (label 0) and 2 (label 1)
    np.testing.assert_allclose(votes[3], [0.0, 1.0])


def test_nearest_bin_edge_follows_pandas_right_closed_bins() -> None:
    bins, names = [8.1, 8.7, 9.1, 9.3], ["low", "medium", "high"]
    values = np.array([8.15, 8.7, 8.71, 9.25, 9.12])
    assert pd.cut(values, bins, labels=names).tolist() == ["low", "low", "medium", "high", "high"]
    distance, across = nearest_edges(values, bins, names)
    np.testing.assert_allclose(distance, [0.05, 0.0, 0.01, 0.05, 0.02], atol=1e-12)
    assert across == [OUTSIDE, "medium", "low", OUTSIDE, "medium"]
