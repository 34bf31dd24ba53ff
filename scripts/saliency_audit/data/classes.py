"""Classes (rule ``bin_classes``): turn the target into classes, keep the configured ones, split train/valid.

A numeric target is binned with ``pd.cut`` (right-closed bins, as in the seed:
a value on an edge belongs to the bin below it; values outside every bin are
dropped). A categorical target uses its values as classes.

A regression target (``target.task: regression``) keeps its values. Its two classes are the
directions of a value from the training split's mean, ``lower`` and ``higher``: every later
stage (maps, statistics, probes, clusters, galleries) reads a regression model through them,
the map of ``higher`` being the evidence that pushes the prediction up. Bins, when given, only
stratify the split and group the counts.
"""

import os
from typing import Any

import numpy as np
import pandas as pd


class ClassError(ValueError):
    """The classes cannot be trained on; the message shows the counts per class."""


def class_labels(target: dict[str, Any], values: pd.Series) -> list[str]:
    """All class labels in their configured order (sorted values for a categorical target)."""
    if "bins" in target:
        return list(target["labels"])
    return list(target.get("labels") or sorted(values.dropna().astype(str).unique()))


def assign_classes(values: pd.Series, target: dict[str, Any]) -> pd.Series:
    """Class of every row as an ordered categorical; NaN where no class applies."""
    labels = class_labels(target, values)
    if "bins" in target:
        return pd.cut(values, bins=target["bins"], labels=labels, right=True).astype(
            pd.CategoricalDtype(labels, ordered=True)
        )
    return pd.Series(pd.Categorical(values.astype(str), categories=labels, ordered=True), index=values.index)


def stratified_split(classes: pd.Series, valid_fraction: float, seed: int) -> np.ndarray:
    """'train'/'valid' per row, the same fraction of every class in valid, reproducible by seed."""
    rng = np.random.default_rng(seed)
    split = np.full(len(classes), "train", dtype=object)
    codes = classes.cat.codes.to_numpy()
    for code in range(len(classes.cat.categories)):
        members = np.flatnonzero(codes == code)
        n_valid = int(round(valid_fraction * len(members)))
        n_valid = min(max(n_valid, 1), len(members) - 1)
        split[rng.permutation(members)[:n_valid]] = "valid"
    return split


OUTSIDE = "(outside every class)"
DIRECTIONS = ["lower", "higher"]  # a regression's classes: below or above the training split's mean
QUANTILE_GROUPS = 10  # a regression without bins is split stratified by deciles of its target


def is_regression(target: dict[str, Any]) -> bool:
    return bool(target.get("task") == "regression")


def make_labels(
    clean: pd.DataFrame, target: dict[str, Any], split: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (labels table id/target/class/split, counts per class and split)."""
    if is_regression(target):
        return regression_labels(clean, target, split)
    values = clean[target["column"]]
    classes = assign_classes(values, target)
    keep = list(target.get("keep") or classes.cat.categories)
    kept = classes.isin(keep).to_numpy()
    labels = pd.DataFrame(
        {
            "id": clean["id"].to_numpy()[kept],
            "target": values.to_numpy()[kept],
            "class": classes[kept].cat.set_categories(keep).array,
        }
    )
    catalog_counts = classes.value_counts(sort=False)
    if len(keep) < 2 or labels.empty or (labels["class"].value_counts() < 2).any():
        shown = ", ".join(f"{c}: {n}" for c, n in catalog_counts.items())
        raise ClassError(
            f"a classifier needs at least 2 kept classes, each with at least 2 images to split into train and "
            f"valid; "
            f"counts per class: {shown}; outside every class: {int(classes.isna().sum())}; "
            f"target.keep: {keep}"
        )
    labels["split"] = stratified_split(labels["class"], split["valid_fraction"], split["seed"])

    per_split = pd.crosstab(labels["class"], labels["split"]).reindex(columns=["train", "valid"], fill_value=0)
    counts = pd.DataFrame({"catalog": catalog_counts, "kept": catalog_counts.index.isin(keep)})
    counts = counts.join(per_split).fillna(0).astype({"train": int, "valid": int})
    counts.loc[OUTSIDE] = [int(classes.isna().sum()), False, 0, 0]
    return labels, counts.rename_axis("class").reset_index()


def training_mean(labels: pd.DataFrame) -> float:
    """A regression's training-split mean: the value that divides its two directions and that its
    model's output is measured from (``factory.DirectionHead``)."""
    return float(labels.loc[(labels["split"] == "train").to_numpy(), "target"].to_numpy(dtype=np.float64).mean())


def predicted_values(logits: Any, mean: float) -> np.ndarray:
    """A regression's predictions from its N x 2 direction logits (``model.factory.DirectionHead``, columns
    in ``DIRECTIONS``' order): the training mean plus the logit of ``higher`` minus that of ``lower``."""
    logits = np.asarray(logits, dtype=np.float64)
    return np.asarray(mean + logits[:, 1] - logits[:, 0])


def regression_labels(
    clean: pd.DataFrame, target: dict[str, Any], split: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(labels table id/target/class/split[/bin], counts per group and split) of a regression target.

    ``class`` is the value's direction from the training split's mean (``DIRECTIONS``); the split
    is stratified by the bins when they are given (``keep`` drops the other bins' rows, as for a
    classifier), by deciles of the target otherwise, so that both splits span its range.
    """
    values = pd.to_numeric(clean[target["column"]], errors="coerce").astype(float)
    bins = assign_classes(values, target) if "bins" in target else None
    kept = values.notna().to_numpy().copy()
    if bins is not None:
        kept &= bins.isin(list(target.get("keep") or bins.cat.categories)).to_numpy()
    if kept.sum() < 4:
        raise ClassError(
            f"a regression needs at least 4 images with a target value (2 to train on, 2 to validate); "
            f"target.column {target['column']!r} has {int(kept.sum())}"
            + (f" inside the kept bins {list(target.get('keep') or [])}" if bins is not None else "")
        )
    labels = pd.DataFrame({"id": clean["id"].to_numpy()[kept], "target": values.to_numpy()[kept]})
    if bins is not None:
        labels["bin"] = bins[kept].cat.remove_unused_categories().array
        strata = labels["bin"]
    else:
        groups = min(QUANTILE_GROUPS, len(labels) // 2)
        strata = pd.Series(pd.qcut(labels["target"].rank(method="first"), groups, labels=False)).astype("category")
    labels["split"] = stratified_split(strata, split["valid_fraction"], split["seed"])
    mean = training_mean(labels)
    higher = (labels["target"] > mean).to_numpy()
    labels["class"] = pd.Categorical.from_codes(higher.astype(int), categories=DIRECTIONS, ordered=True)
    if (labels["class"].value_counts() < 2).any():
        raise ClassError(
            f"target.column {target['column']!r}: fewer than 2 images lie on one side of the training mean "
            f"{mean:g} ({labels['class'].value_counts().to_dict()}); a regression needs a target that varies"
        )
    labels = labels[["id", "target", "class", "split", *(["bin"] if bins is not None else [])]]
    group = "bin" if bins is not None else "class"
    per_split = pd.crosstab(labels[group], labels["split"]).reindex(columns=["train", "valid"], fill_value=0)
    if bins is not None:
        keep = list(target.get("keep") or bins.cat.categories)
        catalog_counts = bins.value_counts(sort=False)
        counts = pd.DataFrame({"catalog": catalog_counts, "kept": catalog_counts.index.isin(keep)})
        counts = counts.join(per_split).fillna(0).astype({"train": int, "valid": int})
        counts.loc[OUTSIDE] = [int((bins.isna() & values.notna()).sum()), False, 0, 0]
    else:
        counts = pd.DataFrame({"catalog": labels["class"].value_counts(sort=False), "kept": True}).join(per_split)
    return labels.reset_index(drop=True), counts.rename_axis("class").reset_index()


def check_kept_images(n_images: int, shards: int, components: int) -> None:
    """Settings that need more kept images than there are fail here, before any packing or training."""
    if shards > n_images:
        raise ClassError(
            f"config key audit.shards: {shards} shards, but only {n_images} images are kept for training and the "
            f"audit; set audit.shards to at most {n_images}"
        )
    if components > n_images:
        raise ClassError(
            f"config key pca.components: {components} components, but only {n_images} images are kept; "
            f"set pca.components to at most {n_images}"
        )


def read_clean(path: str | os.PathLike) -> pd.DataFrame:
    """The clean catalog that validate_catalog wrote, every column."""
    return pd.read_parquet(path)
