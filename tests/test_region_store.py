"""The regions found once (rule ``regions``): written a shard at a time, read back by row of the
gathered images, equal to finding them again."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from saliency_audit.data.image_io import open_packed, packed_writer
from saliency_audit.data.region_store import RegionStore, pack_masks, unpack_masks, write_regions
from saliency_audit.data.regions import regions_and_neighbours
from test_regions import MAX_PIXELS, SEGMENTS, SIZE, galaxy_and_touching_star


def packed(path: Path, images: np.ndarray) -> np.ndarray:
    with packed_writer(path, len(images), images.shape[1], images.shape[-1]) as write:
        write(images)
    return open_packed(path)


def catalog_of(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"image_width": SIZE, "image_height": SIZE}, index=pd.Index(ids, name="id"))


@pytest.mark.parametrize("size", [48, 61])
def test_packed_bits_round_trip(size: int) -> None:
    rng = np.random.default_rng(size)
    objects, neighbours = rng.random((2, 3, size, size)) < 0.3
    back = unpack_masks(pack_masks(objects, neighbours), size)
    np.testing.assert_array_equal(back[0], objects)
    np.testing.assert_array_equal(back[1], neighbours)


def test_two_parts_read_back_as_the_regions_found_on_the_whole_batch(tmp_path: Path) -> None:
    images, _, _ = galaxy_and_touching_star(7, seed=11)
    ids = [f"g{i}" for i in range(7)]
    catalog = catalog_of(ids)
    parts, problems = [], []
    for k, rows in enumerate((slice(0, 4), slice(4, 7))):  # two shards, as the rule writes them
        part, listed = tmp_path / f"part-{k}.npy", tmp_path / f"problems-{k}.csv"
        found = write_regions(packed(tmp_path / f"images-{k}.npy", images[rows]), ids[rows], catalog, SEGMENTS,
                              MAX_PIXELS, part, batch_size=3)  # fmt: skip
        found.to_csv(listed, index=False)
        parts.append(part)
        problems.append(listed)
    store = RegionStore.open(parts, problems, 7)
    objects, neighbours, _ = regions_and_neighbours(SEGMENTS, ids, images, catalog, None, MAX_PIXELS)
    assert neighbours.any() and objects.any(axis=(1, 2)).all()
    order = np.array([6, 0, 5, 3, 4])  # any order, across both parts
    read_objects, read_neighbours, bad = store.read(order, [ids[i] for i in order])
    np.testing.assert_array_equal(read_objects, objects[order])
    np.testing.assert_array_equal(read_neighbours, neighbours[order])
    assert bad == []
    with pytest.raises(ValueError, match="regions of 7 images, not of the 8 images they must cover"):
        RegionStore.open(parts, problems, 8)
    with pytest.raises(ValueError, match="row 7 is beyond the 7 rows of the regions"):
        store.read(np.array([7]), ["g7"])


def test_images_without_a_region_are_listed_and_read_back_as_problems(tmp_path: Path) -> None:
    images, _, _ = galaxy_and_touching_star(3, seed=12)
    ids = ["a", "b", "c"]
    masks = tmp_path / "masks"
    masks.mkdir()
    for name in ("a", "c"):
        mask = np.zeros((SIZE, SIZE), np.uint8)
        mask[10:20, 12:30] = 255
        Image.fromarray(mask).save(masks / f"{name}.png")
    spec = {"method": "masks", "masks": str(masks / "{id}.png")}
    problems = write_regions(packed(tmp_path / "images.npy", images), ids, catalog_of(ids), spec, MAX_PIXELS,
                             tmp_path / "part-0.npy")  # fmt: skip
    assert problems["id"].tolist() == ["b"] and problems["problem"].tolist() == ["missing_mask"]
    problems.to_csv(tmp_path / "problems-0.csv", index=False)
    store = RegionStore.open([tmp_path / "part-0.npy"], [tmp_path / "problems-0.csv"], 3)
    objects, neighbours, bad = store.read(np.array([2, 1, 0]), ["c", "b", "a"])
    assert [(position, problem) for position, problem, _ in bad] == [(1, "missing_mask")]
    assert objects[0, 10:20, 12:30].all() and objects[0].sum() == 180 and not objects[1].any()
    assert not neighbours.any()  # a mask knows no other sources
    np.testing.assert_array_equal(store.problem_table(), problems.astype(str))
