import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from saliency_audit.data.classes import ClassError, assign_classes, check_kept_images, make_labels, stratified_split
from saliency_audit.report.data_figures import histogram_figure
from saliency_audit.report.figures import FigureError

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


LONG = "x" * 1_000_000  # a class label no figure can print


def run_bin_classes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, frame: pd.DataFrame, target: dict) -> Any:
    """The rule's script on ``frame`` (its log left on stderr), returning its outputs."""
    import bin_classes

    monkeypatch.setattr(bin_classes, "start_job", lambda log: None)
    frame.to_parquet(tmp_path / "clean.parquet")
    outputs = {name: tmp_path / f"{name}.{ext}" for name, ext in
               [("labels", "parquet"), ("counts", "csv"), ("histogram", "png")]}  # fmt: skip
    bin_classes.main(
        SimpleNamespace(
            input=SimpleNamespace(clean=tmp_path / "clean.parquet"),
            params=SimpleNamespace(target=target, split=SPLIT, shards=1, components=2),
            output=SimpleNamespace(**outputs),
            log=[tmp_path / "bin_classes.log"],
        )
    )
    return SimpleNamespace(**outputs)


def test_a_million_character_class_label_is_drawn_shortened_and_kept_in_full(tmp_path, monkeypatch) -> None:
    frame = pd.DataFrame({"id": [f"g{i}" for i in range(6)], "kind": [LONG, "whale"] * 3})
    started = time.perf_counter()
    out = run_bin_classes(tmp_path, monkeypatch, frame, {"column": "kind"})
    assert time.perf_counter() - started < 20
    assert Image.open(out.histogram).size[0] < 3000  # no 12000030 pixels wide figure
    # the data keep the label in full: only the drawing shortens it
    labels = pd.read_parquet(out.labels)
    assert list(labels["class"].cat.categories) == ["whale", LONG]
    assert (labels["class"].astype(str) == frame["kind"]).all()
    assert pd.read_csv(out.counts)["class"].iloc[1] == LONG
    counts = make_labels(frame, {"column": "kind"}, SPLIT)[1]
    figure = histogram_figure(frame["kind"], {"column": "kind"}, counts)
    ticks = [tick.get_text() for tick in figure.axes[0].get_xticklabels()]
    assert ticks == ["whale", "x" * 39 + "…"]


def test_a_long_bin_label_is_shortened_in_the_histogram() -> None:
    target = {"column": "Z", "bins": [0.0, 1.0, 2.0], "labels": [LONG, "high"]}
    values = pd.Series([0.5, 0.7, 1.5, 1.8])
    counts = make_labels(catalog(list(values)), target, SPLIT)[1]
    figure = histogram_figure(values, target, counts)
    shown = [text.get_text().split("\n")[0] for text in figure.axes[0].texts]
    assert shown == ["x" * 39 + "…", "high"]


def test_a_figure_that_cannot_be_drawn_names_the_target_column_and_the_file(tmp_path, monkeypatch) -> None:
    import bin_classes

    def too_large(*args: Any) -> None:
        raise ValueError("Image size of 12000030x464 pixels is too large. It must be less than 2^16 in each direction.")

    monkeypatch.setattr(bin_classes, "histogram_figure", too_large)
    frame = pd.DataFrame({"id": [f"g{i}" for i in range(4)], "kind": ["whale", "dolphin"] * 2})
    with pytest.raises(FigureError) as error:
        run_bin_classes(tmp_path, monkeypatch, frame, {"column": "kind"})
    message = str(error.value)
    assert "target column 'kind'" in message and "histogram.png" in message and "12000030x464" in message


REGRESSION = {"column": "Z", "task": "regression"}


def test_a_regression_keeps_the_values_and_names_each_direction_from_the_training_mean() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(9.0, 0.3, 400)
    labels, counts = make_labels(catalog(list(values)), REGRESSION, SPLIT)
    np.testing.assert_array_equal(labels["target"], values)  # every row, in catalog order
    mean = values[labels["split"].to_numpy() == "train"].mean()
    assert list(labels["class"].cat.categories) == ["lower", "higher"]
    np.testing.assert_array_equal(labels["class"] == "higher", values > mean)
    assert (labels["split"] == "valid").mean() == pytest.approx(0.2, abs=0.01)
    # stratified by deciles: each decile of the target gives valid its share
    deciles = pd.qcut(values, 10, labels=False)
    shares = pd.Series(labels["split"] == "valid").groupby(deciles).mean()
    assert shares.between(0.15, 0.25).all()
    assert counts.set_index("class")[["train", "valid"]].sum().sum() == 400


def test_a_regression_with_bins_stratifies_by_them_and_keeps_the_kept_bins_only() -> None:
    rng = np.random.default_rng(2)
    values = rng.uniform(8.0, 9.4, 600)
    labels, counts = make_labels(catalog(list(values)), {**NUMERIC, "task": "regression"}, SPLIT)
    binned = pd.cut(values, NUMERIC["bins"], labels=NUMERIC["labels"]).astype(object)
    kept = np.isin(binned, ["low", "high"])
    np.testing.assert_array_equal(labels["target"], values[kept])
    np.testing.assert_array_equal(labels["bin"].astype(str), binned[kept])
    counts = counts.set_index("class")
    assert (
        not counts.loc["medium", "kept"]
        and counts.loc["low", "train"] + counts.loc["low", "valid"] == (binned == "low").sum()
    )


def test_a_regression_that_does_not_vary_is_refused() -> None:
    with pytest.raises(ClassError, match="varies"):
        make_labels(catalog([1.0] * 20), REGRESSION, SPLIT)
    with pytest.raises(ClassError, match="at least 4"):
        make_labels(catalog([1.0, 2.0, np.nan]), REGRESSION, SPLIT)


def test_the_regression_histogram_marks_the_training_mean() -> None:
    values = pd.Series(np.linspace(0, 1, 50))
    labels, counts = make_labels(catalog(list(values)), REGRESSION, SPLIT)
    figure = histogram_figure(values, REGRESSION, counts, 0.5)
    assert [t.get_text() for t in figure.axes[0].texts] == ["training mean 0.5"]


def variants_catalog(sources: int, copies: int, seed: int = 3) -> pd.DataFrame:
    """``copies`` cutouts of each of ``sources`` objects, which share the object's value and class."""
    values = np.random.default_rng(seed).uniform(8.15, 9.25, sources)
    frame = catalog(list(np.repeat(values, copies)))
    frame["source"] = [f"src{i // copies}" for i in range(len(frame))]
    return frame


@pytest.mark.parametrize("target", [NUMERIC, REGRESSION])
def test_rows_of_one_group_stay_in_one_split_stratified_as_far_as_groups_allow(target: dict) -> None:
    frame = variants_catalog(300, 4)
    grouped = {**SPLIT, "group_column": "source"}
    labels, _ = make_labels(frame, target, grouped)
    sources = frame.set_index("id").loc[labels["id"], "source"].to_numpy()
    assert (pd.Series(labels["split"].to_numpy()).groupby(sources).nunique() == 1).all()  # no object in both
    strata = labels["class"] if target is NUMERIC else pd.qcut(labels["target"], 10, labels=False)
    shares = pd.Series(labels["split"].to_numpy() == "valid").groupby(strata.to_numpy()).mean()
    assert shares.between(0.15, 0.25).all(), shares  # each class (or decile) near its 20%
    again, _ = make_labels(frame, target, grouped)
    assert again["split"].tolist() == labels["split"].tolist()  # reproducible by seed
    # the counterfactual: a row-by-row split puts most objects in both splits
    plain, _ = make_labels(frame, target, SPLIT)
    assert (pd.Series(plain["split"].to_numpy()).groupby(sources).nunique() == 2).mean() > 0.5


def test_few_groups_keep_every_class_in_training_and_bad_group_columns_are_named() -> None:
    frame = catalog(list(np.repeat([8.2, 8.3, 8.4, 9.2, 9.25], 10)))  # three low objects, two high
    frame["source"] = [f"src{i // 10}" for i in range(len(frame))]
    labels, _ = make_labels(frame, NUMERIC, {**SPLIT, "group_column": "source"})
    assert (labels.groupby("class", observed=True)["split"].apply(lambda s: (s == "train").any())).all()
    per_class = pd.crosstab(labels["class"], labels["split"])
    assert (per_class > 0).all().all() and per_class.loc["low", "valid"] == per_class.loc["high", "valid"] == 10
    with pytest.raises(ClassError, match="split.group_column"):
        make_labels(frame, NUMERIC, {**SPLIT, "group_column": "sorce"})
    frame.loc[3, "source"] = None
    with pytest.raises(ClassError, match="split.group_column 'source' is empty for id 'g3'"):
        make_labels(frame, NUMERIC, {**SPLIT, "group_column": "source"})
