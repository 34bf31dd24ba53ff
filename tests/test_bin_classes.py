import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saliency_audit.data.classes import ClassError, assign_classes, check_kept_images, make_labels, stratified_split

NUMERIC = {"column": "Z", "bins": [8.1, 8.7, 9.1, 9.3], "labels": ["low", "medium", "high"], "keep": ["low", "high"]}
SPLIT = {"valid_fraction": 0.2, "seed": 256}


def test_bins_are_right_closed_and_outside_values_get_no_class() -> None:
    values = pd.Series([8.1, 8.1000001, 8.7, 8.7000001, 9.1, 9.3, 9.3000001, 7.0, np.nan])
    classes = assign_classes(values, NUMERIC)
    assert classes.astype(object).where(classes.notna(), None).tolist() == [
        None,
        "low",
        "low",
        "medium",
        "medium",
        "high",
        None,
        None,
        None,
    ]
    assert list(classes.cat.categories) == ["low", "medium", "high"]


def test_categorical_target_uses_sorted_values_or_given_order() -> None:
    values = pd.Series(["whale", "dolphin", "whale", None])
    assert list(assign_classes(values, {"column": "s"}).cat.categories) == ["dolphin", "whale"]
    ordered = assign_classes(values, {"column": "s", "labels": ["whale", "dolphin"]})
    assert list(ordered.cat.categories) == ["whale", "dolphin"] and ordered.isna().tolist() == [False] * 3 + [True]


def catalog(values: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"g{i}" for i in range(len(values))], "Z": values})


def test_make_labels_keeps_configured_classes_and_counts_the_rest() -> None:
    rng = np.random.default_rng(0)
    values = list(rng.uniform(8.0, 9.4, 500))
    labels, counts = make_labels(catalog(values), NUMERIC, SPLIT)
    expected = pd.cut(values, NUMERIC["bins"], labels=NUMERIC["labels"])
    kept = np.isin(np.asarray(expected.astype(object)), ["low", "high"])
    assert len(labels) == kept.sum()
    assert list(labels["class"].cat.categories) == ["low", "high"]
    np.testing.assert_array_equal(labels["class"].astype(str), np.asarray(expected.astype(object))[kept])
    counts = counts.set_index("class")
    assert counts.loc["medium", "catalog"] == (expected == "medium").sum() and not counts.loc["medium", "kept"]
    assert counts.loc["(outside every class)", "catalog"] == pd.isna(expected).sum()
    assert counts.loc["high", "train"] + counts.loc["high", "valid"] == (expected == "high").sum()


def test_split_is_stratified_and_reproducible() -> None:
    classes = pd.Series(pd.Categorical(["a"] * 100 + ["b"] * 30 + ["c"] * 7, categories=["a", "b", "c"]))
    split = stratified_split(classes, 0.2, seed=256)
    valid = pd.Series(split == "valid").groupby(classes.to_numpy()).sum()
    assert valid.to_dict() == {"a": 20, "b": 6, "c": 1}
    np.testing.assert_array_equal(split, stratified_split(classes, 0.2, seed=256))
    assert not np.array_equal(split, stratified_split(classes, 0.2, seed=257))


def test_split_keeps_one_of_each_class_on_each_side() -> None:
    classes = pd.Series(pd.Categorical(["a", "a", "b", "b", "b"], categories=["a", "b"]))
    split = stratified_split(classes, 0.01, seed=0)
    for name in "ab":
        sides = set(split[(classes == name).to_numpy()])
        assert sides == {"train", "valid"}


def test_empty_class_is_an_error_that_shows_the_counts() -> None:
    with pytest.raises(ClassError, match=r"low: 0, medium: 3, high: 2"):
        make_labels(catalog([8.8, 8.9, 9.0, 9.2, 9.25]), NUMERIC, SPLIT)


@settings(max_examples=200, deadline=None)
@given(
    edges=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=6, unique=True).map(sorted),
    values=st.lists(st.one_of(st.floats(-2e6, 2e6), st.just(np.nan)), max_size=60),
)
def test_binning_matches_the_bin_definition_for_any_values(edges: list[float], values: list[float]) -> None:
    labels = [f"c{i}" for i in range(len(edges) - 1)]
    classes = assign_classes(pd.Series(values, dtype=float), {"column": "Z", "bins": edges, "labels": labels})
    for value, label in zip(values, classes.astype(object).where(classes.notna(), None)):
        inside = [i for i in range(len(labels)) if edges[i] < value <= edges[i + 1]]  # right-closed, like pd.cut
        assert label == (labels[inside[0]] if inside else None), (value, edges)


@settings(max_examples=100, deadline=None)
@given(
    counts=st.lists(st.integers(2, 40), min_size=2, max_size=4),
    fraction=st.floats(0.05, 0.6),
    seed=st.integers(0, 2**31),
)
def test_split_keeps_every_class_on_both_sides_for_any_counts(counts: list[int], fraction: float, seed: int) -> None:
    classes = pd.Series(np.repeat([f"c{i}" for i in range(len(counts))], counts)).astype("category")
    split = stratified_split(classes, fraction, seed)
    assert set(split) <= {"train", "valid"}
    for name in classes.cat.categories:
        sides = set(split[(classes == name).to_numpy()])
        assert sides == {"train", "valid"}, (name, counts, fraction)
    assert (split == stratified_split(classes, fraction, seed)).all()


def test_a_categorical_target_with_one_value_is_an_error_that_shows_the_counts() -> None:
    frame = pd.DataFrame({"id": ["a", "b", "c"], "kind": ["whale", "whale", None]})
    expected = r"at least 2 kept classes.*counts per class: whale: 2; outside every class: 1"
    with pytest.raises(ClassError, match=expected):
        make_labels(frame, {"column": "kind"}, SPLIT)


def test_more_shards_or_components_than_kept_images_is_an_error_before_packing() -> None:
    check_kept_images(5, 5, 3)
    with pytest.raises(ClassError, match="config key audit.shards: 6 shards, but only 5 images are kept"):
        check_kept_images(5, 6, 3)
    with pytest.raises(ClassError, match="config key pca.components: 8 components, but only 5 images are kept"):
        check_kept_images(5, 1, 8)
