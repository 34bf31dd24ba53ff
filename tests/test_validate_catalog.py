import numpy as np
import pandas as pd
import pytest
from PIL import Image

from validate_catalog import CatalogError, id_problems, read_catalog, target_problems, validate


@pytest.fixture
def image_dir(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("1", "2", "3", "4", "5"):
        Image.fromarray(np.full((16, 16, 3), int(name) * 40, dtype=np.uint8)).save(folder / f"{name}.jpg")
    return folder


def run(frame: pd.DataFrame, image_dir, **kwargs):
    options = dict(
        id_column="objID",
        images=str(image_dir / "{id}.jpg"),
        target_column="Z",
        numeric_target=True,
        invalid=[-9999.0],
        max_pixels=10**6,
        size=16,
    )
    options.update(kwargs)
    return validate(frame, **options)


def test_clean_catalog_passes_untouched(image_dir) -> None:
    frame = pd.DataFrame({"objID": ["1", "2", "3"], "Z": [8.5, 9.0, 9.2], "extra": ["a", "b", "c"]})
    clean, integrity = run(frame, image_dir)
    assert integrity.empty and list(integrity.columns) == ["row", "id", "problem", "detail"]
    assert clean["id"].tolist() == ["1", "2", "3"] and clean["extra"].tolist() == ["a", "b", "c"]
    assert clean["image"].tolist() == [str(image_dir / f"{i}.jpg") for i in "123"]


def test_one_row_per_problem_and_good_rows_kept(image_dir) -> None:
    (image_dir / "4.jpg").write_bytes((image_dir / "4.jpg").read_bytes()[:100])
    frame = pd.DataFrame(
        {
            "objID": ["1", "missing", "4", "2", "1", "../../x", None, "3", "5", "5b"],
            "Z": [8.5, 8.6, 8.7, np.nan, 9.0, 9.1, 9.2, "-9999", "inf", "high"],
        }
    )
    frame["Z"] = frame["Z"].astype(object)
    clean, integrity = run(frame, image_dir)
    got = list(zip(integrity["row"], integrity["problem"]))
    assert got == [
        (2, "missing_image"),
        (3, "unreadable_image"),
        (4, "missing_target"),
        (5, "duplicate_id"),
        (6, "unsafe_id"),
        (7, "missing_id"),
        (8, "invalid_target"),
        (9, "non_finite_target"),
        (10, "missing_image"),
        (10, "non_numeric_target"),
    ]
    assert clean["id"].tolist() == ["1"]
    assert integrity.loc[integrity["problem"] == "duplicate_id", "detail"].item() == "same id as row 1"
    assert "missing.jpg" in integrity.loc[integrity["row"] == 2, "detail"].item()


def test_ids_are_exact_64_bit_strings(tmp_path) -> None:
    (tmp_path / "c.csv").write_text("objID,Z\n1237648720693755918,8.5\n1237648720693755919,9.0\n")
    frame = read_catalog(tmp_path / "c.csv", "objID")
    assert frame["objID"].tolist() == ["1237648720693755918", "1237648720693755919"]


def test_ids_that_look_missing_are_names_and_only_empty_cells_are_missing(tmp_path) -> None:
    (tmp_path / "c.csv").write_text("objID,Z\nNA,8.5\nnan,9.0\n,9.1\nnull,nan\n")
    frame = read_catalog(tmp_path / "c.csv", "objID")
    assert frame["objID"].tolist()[:2] == ["NA", "nan"] and pd.isna(frame["objID"].iloc[2])
    assert frame["objID"].iloc[3] == "null" and np.isnan(frame["Z"].iloc[3])  # other columns keep NA parsing


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        (["a", "b", "a", "a"], [(2, "duplicate_id"), (3, "duplicate_id")]),
        (["a/b", "..", "a\\b", "ok.name", "..x"], [(0, "unsafe_id"), (1, "unsafe_id"), (2, "unsafe_id")]),
        (["", " ", None], [(0, "missing_id"), (1, "missing_id"), (2, "missing_id")]),
    ],
)
def test_id_problems(ids, expected) -> None:
    assert [(p, kind) for p, kind, _ in id_problems(pd.Series(ids, dtype="string"))] == expected


def test_target_problems_categorical_only_needs_a_value() -> None:
    values = pd.Series(["whale", "", None, "inf"])
    assert [(p, k) for p, k, _ in target_problems(values, numeric=False, invalid=[])] == [
        (1, "missing_target"),
        (2, "missing_target"),
    ]


def test_missing_column_lists_columns_and_closest_match(image_dir) -> None:
    frame = pd.DataFrame({"objid": ["1"], "Z": [8.5]})
    with pytest.raises(
        CatalogError, match=r"id_column: column 'objID'.*Columns present: objid, Z; did you mean 'objid'"
    ):
        run(frame, image_dir)
    frame = pd.DataFrame({"objID": ["1"], "metal": [8.5]})
    with pytest.raises(CatalogError, match=r"target.column: column 'Z'"):
        run(frame, image_dir)


def test_missing_image_folder_is_one_clear_error(tmp_path) -> None:
    frame = pd.DataFrame({"objID": ["1", "2"], "Z": [8.5, 9.0]})
    with pytest.raises(CatalogError, match=r"image folder .*nowhere does not exist"):
        run(frame, tmp_path / "nowhere")


def test_nothing_usable_says_why(image_dir) -> None:
    frame = pd.DataFrame({"objID": ["x", "y"], "Z": [8.5, np.nan]})
    with pytest.raises(CatalogError, match=r"no usable row.*'missing_image': 2"):
        run(frame, image_dir)


def test_missing_catalog_file(tmp_path) -> None:
    with pytest.raises(CatalogError, match="nope.csv"):
        read_catalog(tmp_path / "nope.csv", "objID")


def test_categorical_column_with_bins_explains_the_fix(image_dir) -> None:
    frame = pd.DataFrame({"objID": ["1", "2"], "Z": ["whale", "dolphin"]})
    with pytest.raises(CatalogError, match=r"target.bins is set, so target.column 'Z' must be numeric"):
        run(frame, image_dir)


def test_ids_are_stripped_and_unicode_ids_name_their_files(image_dir) -> None:
    Image.fromarray(np.full((16, 16, 3), 90, dtype=np.uint8)).save(image_dir / "NGC 1300 Ω.jpg")
    frame = pd.DataFrame({"objID": [" 1", "2\t", "NGC 1300 Ω", " "], "Z": [8.5, 9.0, 9.2, 8.8]})
    clean, integrity = run(frame, image_dir)
    assert clean["id"].tolist() == ["1", "2", "NGC 1300 Ω"]
    assert clean["image"].tolist()[2] == str(image_dir / "NGC 1300 Ω.jpg")
    assert list(zip(integrity["row"], integrity["problem"])) == [(4, "missing_id")]


def test_an_object_cut_by_the_crop_is_a_warning_and_its_row_is_kept(image_dir) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    for name, (y, x, r) in {"small": (32, 32, 5), "large": (32, 32, 22), "offset": (10, 32, 7)}.items():
        sky = rng.normal(30, 3, (64, 64))
        galaxy = 200 * np.exp(-(((yy - y) ** 2 + (xx - x) ** 2) / (2 * (r / 2) ** 2)))
        pixels = np.clip(sky + galaxy, 0, 255).astype(np.uint8)
        Image.fromarray(np.repeat(pixels[..., None], 3, axis=2)).save(image_dir / f"{name}.png")
    frame = pd.DataFrame({"objID": ["small", "large", "offset"], "Z": [8.5, 9.0, 9.2]})
    clean, integrity = run(frame, image_dir, images=str(image_dir / "{id}.png"), size=32)
    assert clean["id"].tolist() == ["small", "large", "offset"]
    assert integrity["id"].tolist() == ["large", "offset"] and set(integrity["problem"]) == {"object_cut"}
    assert integrity["detail"].str.contains("is 64x64; the central 32x32 crop").all()
    _, fits = run(frame, image_dir, images=str(image_dir / "{id}.png"), size=64)
    assert fits.empty


def test_a_catalog_whose_columns_are_named_id_and_image(image_dir) -> None:
    frame = pd.DataFrame({"id": ["1", "2"], "Z": [8.5, 9.0], "image": ["a.fits", "b.fits"]})
    clean, integrity = run(frame, image_dir, id_column="id")
    assert integrity.empty and clean["id"].tolist() == ["1", "2"]
    assert clean["image"].tolist() == [str(image_dir / "1.jpg"), str(image_dir / "2.jpg")]
    assert clean["catalog_image"].tolist() == ["a.fits", "b.fits"]
