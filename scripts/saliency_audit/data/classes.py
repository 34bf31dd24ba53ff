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

from saliency_audit.data.catalog_csv import missing_column_message


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


def grouped_split(classes: pd.Series, groups: pd.Series, valid_fraction: float, seed: int) -> np.ndarray:
    """'train'/'valid' per row with every group (a source, an object, a patient: the rows that share a
    ``groups`` value) in one split, each class's valid share as near ``valid_fraction`` as whole
    groups allow: groups in a seeded random order join valid while they bring a class nearer its
    target than past it, and never take a class's last training group; a class left without a valid
    row then gets its smallest group that can go.

    Several cutouts of one object in both splits (augmented copies, overlapping stamps, repeated
    observations) let the model be checked on what it has seen: the valid score then overstates it."""
    codes = classes.cat.codes.to_numpy()
    n_classes = len(classes.cat.categories)
    group_codes, _ = pd.factorize(groups.astype(str), sort=True)
    per_group = np.zeros((group_codes.max() + 1, n_classes), dtype=np.int64)
    np.add.at(per_group, (group_codes, codes), 1)
    total = per_group.sum(axis=0)
    remaining = np.round(valid_fraction * total).astype(np.int64)
    training = total.copy()
    in_valid = np.zeros(len(per_group), dtype=bool)

    def movable(g: int) -> bool:  # leaves every class it holds a training row
        return not ((training - per_group[g] <= 0) & (per_group[g] > 0)).any()

    for g in np.random.default_rng(seed).permutation(len(per_group)).tolist():
        counts = per_group[g]
        gain = np.minimum(counts, np.maximum(remaining, 0)).sum()
        overshoot = np.maximum(counts - np.maximum(remaining, 0), 0).sum()
        if gain > overshoot and movable(g):
            in_valid[g] = True
            remaining -= counts
            training -= counts
    for c in np.flatnonzero(training == total):
        options = [g for g in np.flatnonzero(~in_valid & (per_group[:, c] > 0)).tolist() if movable(g)]
        if options:
            g = min(options, key=lambda k: int(per_group[k].sum()))
            in_valid[g] = True
            training -= per_group[g]
    return np.where(in_valid[group_codes], "valid", "train").astype(object)


def split_rows(strata: pd.Series, clean_rows: pd.DataFrame, split: dict[str, Any]) -> np.ndarray:
    """The train/valid split of the kept rows: grouped by ``split.group_column`` when set, else stratified."""
    column = split.get("group_column")
    if not column:
        return stratified_split(strata, split["valid_fraction"], split["seed"])
    if column not in clean_rows.columns:
        raise ClassError(missing_column_message(column, "split.group_column", [str(c) for c in clean_rows.columns]))
    groups = clean_rows[column].fillna("").astype(str)
    if (groups == "").any():
        row = int(np.flatnonzero((groups == "").to_numpy())[0])
        raise ClassError(f"split.group_column {column!r} is empty for id {clean_rows['id'].iloc[row]!r}: "
                         "every row needs its group")  # fmt: skip
    return grouped_split(strata, groups.reset_index(drop=True), split["valid_fraction"], split["seed"])


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
    labels["split"] = split_rows(labels["class"], clean[kept], split)

    per_split = pd.crosstab(labels["class"], labels["split"]).reindex(columns=["train", "valid"], fill_value=0)
    counts = pd.DataFrame({"catalog": catalog_counts, "kept": catalog_counts.index.isin(keep)})
    counts = counts.join(per_split).fillna(0).astype({"train": int, "valid": int})
    counts.loc[OUTSIDE] = [int(classes.isna().sum()), False, 0, 0]
    return labels, counts.rename_axis("class").reset_index()


def training_mean(labels: pd.DataFrame) -> float:
    """A regression's training-split mean: the value that divides its two directions and that its
    model's output is measured from (``factory.DirectionHead``)."""
    return float(labels.loc[(labels["split"] == "train").to_numpy(), "target"].to_numpy(dtype=np.float64).mean())


def training_scale(labels: pd.DataFrame) -> float:
    """A regression's training-split standard deviation: the unit its model's output is trained in."""
    return float(labels.loc[(labels["split"] == "train").to_numpy(), "target"].to_numpy(dtype=np.float64).std())


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
    labels["split"] = split_rows(strata, clean[kept], split)
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
