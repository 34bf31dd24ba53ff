"""Classes (rule ``bin_classes``): turn the target into classes, keep the configured ones, split train/valid.

A numeric target is binned with ``pd.cut`` (right-closed bins, as in the seed:
a value on an edge belongs to the bin below it; values outside every bin are
dropped). A categorical target uses its values as classes.
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


def make_labels(
    clean: pd.DataFrame, target: dict[str, Any], split: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (labels table id/target/class/split, counts per class and split)."""
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
