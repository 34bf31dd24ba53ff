"""BG-Gap: objects pasted on backgrounds of their own / another class, scored where the truth is known.

Synthetic cutouts: a disk at the centre (dim for class ``a``, bright for ``b``) and, for class ``b``
only, a star in a corner. A model that reads the star only must lose every Mixed-Rand image (BG-Gap 1);
a model that reads the disk only must not care whose background it is on (BG-Gap 0).
"""

import io
from pathlib import Path

import matplotlib.text
import numpy as np
import pandas as pd
import pytest
import torch

from saliency_audit.data.packing import PackedIndex
from saliency_audit.data.region_store import RegionStore, write_regions
from saliency_audit.report.background_figures import backgrounds_figure
from saliency_audit.report.figures import LABEL_LIMIT, plt
from saliency_audit.saliency.backgrounds import (
    COLUMNS,
    bg_gap_table,
    draw_partners,
    paste,
    split_views,
    view_predictions,
)
from saliency_audit.saliency.interventions import probe_images
from saliency_audit.saliency.vocabulary import STATE_OK

SIZE = 32
PER_CLASS = 12
CLASSES = ["a", "b"]
META = {"classes": CLASSES, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
REGION = {"method": "circle", "radius_column": "r", "pixel_scale": 1.0}
SETTINGS = {"fill": "sky", "seed": 0}
RADIUS = 2.0  # the object part: the region grown by 2 px


class Threshold(torch.nn.Module):
    """Predicts ``b`` when the red channel's mean over ``window`` (of normalised pixels) exceeds ``level``."""

    def __init__(self, window: tuple[slice, slice], level: float) -> None:
        super().__init__()
        self.window, self.level = window, level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        evidence = x[:, 0, self.window[0], self.window[1]].mean(dim=(1, 2)) - self.level
        return torch.stack([-evidence, evidence], dim=1)


def reads_background() -> Threshold:
    return Threshold((slice(3, 7), slice(3, 7)), 0.5)  # the star's corner


def reads_object() -> Threshold:
    return Threshold((slice(14, 18), slice(14, 18)), 0.66)  # the disk's centre: 120 vs 220 of 255


def cutouts(seed: int = 0) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """Images, labels (id, class, split) and the clean catalog (indexed by id) of 2 x PER_CLASS cutouts."""
    rng = np.random.default_rng(seed)
    n = 2 * PER_CLASS
    classes = np.repeat(CLASSES, PER_CLASS)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    images = rng.normal(30, 3, (n, SIZE, SIZE, 3))
    disk = np.hypot(yy - 15.5, xx - 15.5) < 5
    star = np.hypot(yy - 5, xx - 5) < 2.5
    for k, name in enumerate(classes):
        images[k][disk] = 220 if name == "b" else 120
        if name == "b":
            images[k][star] = 255
    ids = [f"g{k:02d}" for k in rng.permutation(n)]  # ids not in class order: the pairing sorts them
    labels = pd.DataFrame({"id": ids, "class": pd.Categorical(classes, CLASSES),
                           "split": np.where(np.arange(n) % 3 == 0, "valid", "train")})  # fmt: skip
    catalog = pd.DataFrame({"image_width": SIZE, "image_height": SIZE, "r": 5.5}, index=pd.Index(ids, name="id"))
    return np.clip(images, 0, 255).astype(np.uint8), labels, catalog


def found_regions(images: np.ndarray, labels: pd.DataFrame, catalog: pd.DataFrame, region: dict,
                  folder: Path) -> RegionStore:  # fmt: skip
    """The regions as the ``regions`` rule finds them, one shard."""
    folder.mkdir(exist_ok=True)
    problems = write_regions(images, labels["id"].tolist(), catalog, region, 10**6, folder / "part-0.npy")
    problems.to_csv(folder / "problems-0.csv", index=False)
    return RegionStore.open([folder / "part-0.npy"], [folder / "problems-0.csv"], len(images))


def predictions(
    model: torch.nn.Module, tmp_path: Path, batch_size: int = 7, region: dict = REGION, **changes: object
) -> pd.DataFrame:
    images, labels, catalog = cutouts()
    index = PackedIndex.from_ids(labels["id"])
    settings = {**SETTINGS, **changes}
    scratch = tmp_path / f"scratch-{batch_size}-{len(list(tmp_path.iterdir()))}"
    scratch.mkdir()
    regions = found_regions(images, labels, catalog, region, scratch / "regions")
    return view_predictions(
        model, META, images, index, regions, labels, catalog, settings, RADIUS, torch.device("cpu"), batch_size,
        scratch,
    )  # fmt: skip


def overall(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["split"] == "all"].set_index("class")


def test_a_model_that_reads_the_background_has_the_largest_gap(tmp_path: Path) -> None:
    table = overall(bg_gap_table(predictions(reads_background(), tmp_path), CLASSES))
    assert list(table.index) == [*CLASSES, "all"]
    assert (table.loc[CLASSES, "n"] == PER_CLASS).all()  # every image has a usable region
    assert table.loc["all", "n"] == table.loc["all", "n_mixed"] == 2 * PER_CLASS
    assert (table["acc_original"] == 1).all() and (table["acc_mixed_same"] == 1).all()
    assert (table["acc_mixed_rand"] == 0).all(), "on the other class's background the star decides"
    assert (table["bg_gap"] == 1).all()
    # the object-only view drops the star (the fill holds no source); the background-only view keeps it
    assert table.loc["b", "acc_object_only"] == 0 and table.loc["b", "acc_background_only"] == 1


def test_a_model_that_reads_the_object_has_no_gap(tmp_path: Path) -> None:
    table = overall(bg_gap_table(predictions(reads_object(), tmp_path), CLASSES))
    assert (table["acc_mixed_same"] == 1).all() and (table["acc_mixed_rand"] == 1).all()
    assert (table["bg_gap"] == 0).all() and (table["acc_object_only"] == 1).all()
    assert table.loc["b", "acc_background_only"] == 0, "without its disk a 'b' image looks like an 'a'"


def test_the_table_has_a_row_per_class_and_split_with_counts(tmp_path: Path) -> None:
    per_image = predictions(reads_background(), tmp_path)
    table = bg_gap_table(per_image, CLASSES)
    assert list(table.columns) == COLUMNS
    groups = {(split, name) for split in ("all", "train", "valid") for name in [*CLASSES, "all"]}
    assert set(zip(table["split"], table["class"])) == groups
    for split in ("train", "valid"):
        rows = table[(table["split"] == split) & (table["class"] != "all")]
        assert rows["n"].sum() == (per_image["split"] == split).sum()
    assert (table["chance"] == 0.5).all()
    assert table["bg_gap_se"].notna().all()


def test_partners_are_of_the_same_and_of_another_class_never_the_image_itself() -> None:
    ids = [f"x{k}" for k in range(23)]
    classes = ["a"] * 10 + ["b"] * 12 + ["c"]  # c has one image: no Mixed-Same partner
    drawn = draw_partners(ids, classes, seed=3)
    labels = np.asarray(classes)
    paired = drawn.same >= 0
    assert (paired == (labels != "c")).all()
    assert (labels[drawn.same[paired]] == labels[paired]).all() and (drawn.same[paired] != np.flatnonzero(paired)).all()
    for name in ("a", "b"):  # a cycle: every background of the class serves once
        members = np.flatnonzero(labels == name)
        assert sorted(drawn.same[members]) == list(members)
    assert (drawn.rand >= 0).all() and (labels[drawn.rand] != labels).all()
    assert set(labels[drawn.rand[labels == "a"]]) == {"b", "c"}, "the other class is drawn among all others"


def test_partners_depend_on_the_seed_and_the_ids_not_on_the_row_order() -> None:
    ids = [f"x{k:02d}" for k in range(40)]
    classes = ["a", "b"] * 20
    first, again = draw_partners(ids, classes, seed=0), draw_partners(ids, classes, seed=0)
    assert (first.same == again.same).all() and (first.rand == again.rand).all()
    other = draw_partners(ids, classes, seed=1)
    assert (first.same != other.same).any()
    order = np.random.default_rng(0).permutation(len(ids))
    shuffled = draw_partners([ids[k] for k in order], [classes[k] for k in order], seed=0)
    by_id = {ids[k]: ids[first.same[k]] for k in range(len(ids))}
    assert {ids[k]: ids[order[shuffled.same[j]]] for j, k in enumerate(order)} == by_id
    assert draw_partners(["only"], ["a"], seed=0).rand.tolist() == [-1]


def test_same_seed_same_table_whatever_the_batches(tmp_path: Path) -> None:
    first = predictions(reads_background(), tmp_path, batch_size=7)
    pd.testing.assert_frame_equal(first, predictions(reads_background(), tmp_path, batch_size=7))
    pd.testing.assert_frame_equal(first, predictions(reads_background(), tmp_path, batch_size=24))
    reseeded = predictions(reads_background(), tmp_path, seed=5)
    assert (reseeded["partner_same"] != first["partner_same"]).any()
    classes = first.set_index("id")["class"]
    assert (first["partner_same"].map(classes) == first["class"]).all()
    assert (first["partner_rand"].map(classes) != first["class"]).all()


def test_an_image_without_a_region_is_counted_but_neither_scored_nor_a_partner(tmp_path: Path) -> None:
    images, labels, catalog = cutouts()
    lost = labels["id"].iloc[0]
    catalog.loc[lost, "r"] = np.nan  # no radius: no region
    regions = found_regions(images, labels, catalog, REGION, tmp_path / "regions")
    per_image = view_predictions(reads_object(), META, images, PackedIndex.from_ids(labels["id"]), regions, labels,
                                 catalog, SETTINGS, RADIUS, torch.device("cpu"), 8, tmp_path)  # fmt: skip
    row = per_image.set_index("id").loc[lost]
    assert not row["usable"] and pd.isna(row["predicted_original"]) and pd.isna(row["partner_same"])
    assert lost not in set(per_image["partner_same"].dropna()) | set(per_image["partner_rand"].dropna())
    table = overall(bg_gap_table(per_image, CLASSES))
    assert table.loc["a", "n_images"] == PER_CLASS and table.loc["a", "n"] == PER_CLASS - 1


def test_the_views_are_the_probes_own_and_the_paste_keeps_the_object_part() -> None:
    images, labels, _ = cutouts()
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    masks = np.broadcast_to(np.hypot(yy - 15.5, xx - 15.5) < 5.5, images.shape[:3]).copy()
    neighbours = np.zeros_like(masks)
    neighbours[::2, 14:17, 21:24] = True  # another segment in the ring of every other image
    areas = np.ones_like(masks)
    ids = labels["id"].tolist()
    views = split_views(images, masks, areas, ids, "sky", RADIUS, 0, neighbours)
    probed = probe_images(images, masks, areas, ids, "sky", RADIUS, 0, neighbours=neighbours)
    assert (views.object_only == probed[0]).all() and (views.background_only == probed[1]).all()
    assert (views.state == STATE_OK).all() and (views.parts >= masks).all()
    assert not (views.parts & neighbours).any() and (views.parts[1::2] & neighbours[::2]).any()
    mixed = paste(images, views.parts, views.background_only[::-1])
    assert (mixed[views.parts] == images[views.parts]).all()
    outside = ~views.parts
    assert (mixed[outside] == views.background_only[::-1][outside]).all()


def test_segments_give_the_object_and_keep_the_star_out_of_its_part(tmp_path: Path) -> None:
    segments = {"method": "segments", "nsigma": 2.0, "npixels": 5, "contrast": 0.001}
    table = overall(bg_gap_table(predictions(reads_background(), tmp_path, region=segments), CLASSES))
    assert (table["n"] > 0).all() and (table["bg_gap"] == 1).all()


@pytest.mark.parametrize("gap", [0.25, np.nan])
def test_the_figure_draws_long_labels_shortened(gap: float) -> None:
    long = "x" * 10_000
    table = pd.DataFrame({"class": ["a", long, "all"], "split": "all", "n": 4, "acc_original": 0.9,
                          "acc_object_only": 0.8, "acc_background_only": 0.5, "acc_mixed_same": 0.8,
                          "acc_mixed_rand": 0.55, "bg_gap": gap, "bg_gap_se": 0.1, "chance": 0.5})  # fmt: skip
    figure = backgrounds_figure(table)
    png = io.BytesIO()
    figure.savefig(png, format="png", bbox_inches="tight")
    texts = [text.get_text() for text in figure.findobj(matplotlib.text.Text)]
    assert png.getbuffer().nbytes < 2_000_000
    assert any("x" * (LABEL_LIMIT - 1) + "…" in text for text in texts)
    assert not any("x" * LABEL_LIMIT in text for text in texts)
    assert any(("BG-Gap +0.25" if gap == gap else "BG-Gap n/a") in text for text in texts)
    assert figure.axes[0].get_ylabel() == "accuracy"
    plt.close(figure)
