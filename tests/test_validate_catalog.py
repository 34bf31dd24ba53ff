import bz2
import gzip
import lzma
import os
import threading
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from saliency_audit.data.image_io import Decoding
from saliency_audit.data.validation import CatalogError, id_problems, read_catalog, target_problems, validate


def textured(seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)


@pytest.fixture
def image_dir(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("1", "2", "3", "4", "5"):
        Image.fromarray(textured(int(name))).save(folder / f"{name}.png")
    return folder


def run(frame: pd.DataFrame, image_dir, **kwargs):
    options = dict(
        id_column="objID",
        images=str(image_dir / "{id}.png"),
        target_column="Z",
        numeric_target=True,
        invalid=[-9999.0],
        max_pixels=10**6,
        size=16,
        nsigma=2.0,
    )
    options.update(kwargs)
    return validate(frame, **options)


def test_clean_catalog_passes_untouched(image_dir) -> None:
    frame = pd.DataFrame({"objID": ["1", "2", "3"], "Z": [8.5, 9.0, 9.2], "extra": ["a", "b", "c"]})
    clean, integrity = run(frame, image_dir)
    assert integrity.empty and list(integrity.columns) == ["row", "id", "problem", "detail"]
    assert clean["id"].tolist() == ["1", "2", "3"] and clean["extra"].tolist() == ["a", "b", "c"]
    assert clean["image"].tolist() == [str(image_dir / f"{i}.png") for i in "123"]
    assert clean["image_width"].tolist() == [16] * 3 and clean["image_height"].tolist() == [16] * 3


def test_one_row_per_problem_and_good_rows_kept(image_dir) -> None:
    (image_dir / "4.png").write_bytes((image_dir / "4.png").read_bytes()[:100])
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
    assert "missing.png" in integrity.loc[integrity["row"] == 2, "detail"].item()


def test_ids_are_exact_64_bit_strings(tmp_path) -> None:
    (tmp_path / "c.csv").write_text("objID,Z\n1237648720693755918,8.5\n1237648720693755919,9.0\n")
    frame = read_catalog(tmp_path / "c.csv").frame
    assert frame["objID"].tolist() == ["1237648720693755918", "1237648720693755919"]


def test_ids_that_look_missing_are_names_and_only_empty_cells_are_missing(tmp_path) -> None:
    (tmp_path / "c.csv").write_text("objID,Z\nNA,8.5\nnan,9.0\n,9.1\nnull,nan\n")
    frame = read_catalog(tmp_path / "c.csv").frame
    assert frame["objID"].tolist()[:2] == ["NA", "nan"] and pd.isna(frame["objID"].iloc[2])
    assert frame["objID"].iloc[3] == "null" and frame["Z"].iloc[3] == "nan"  # text; the target rule reads it


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
        read_catalog(tmp_path / "nope.csv")


def test_categorical_column_with_bins_explains_the_fix(image_dir) -> None:
    frame = pd.DataFrame({"objID": ["1", "2"], "Z": ["whale", "dolphin"]})
    with pytest.raises(CatalogError, match=r"target.bins is set, so target.column 'Z' must be numeric"):
        run(frame, image_dir)


def test_ids_are_stripped_and_unicode_ids_name_their_files(image_dir) -> None:
    Image.fromarray(textured(9)).save(image_dir / "NGC 1300 Ω.png")
    frame = pd.DataFrame({"objID": [" 1", "2\t", "NGC 1300 Ω", " "], "Z": [8.5, 9.0, 9.2, 8.8]})
    clean, integrity = run(frame, image_dir)
    assert clean["id"].tolist() == ["1", "2", "NGC 1300 Ω"]
    assert clean["image"].tolist()[2] == str(image_dir / "NGC 1300 Ω.png")
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
    # the check segments with the configured saliency.object.nsigma: a threshold no pixel reaches finds no object
    _, unseen = run(frame, image_dir, images=str(image_dir / "{id}.png"), size=32, nsigma=1e6)
    assert unseen.empty


def test_a_catalog_whose_columns_are_named_id_and_image(image_dir) -> None:
    frame = pd.DataFrame({"id": ["1", "2"], "Z": [8.5, 9.0], "image": ["a.fits", "b.fits"]})
    clean, integrity = run(frame, image_dir, id_column="id")
    assert integrity.empty and clean["id"].tolist() == ["1", "2"]
    assert clean["image"].tolist() == [str(image_dir / "1.png"), str(image_dir / "2.png")]
    assert clean["catalog_image"].tolist() == ["a.fits", "b.fits"]


def write_catalog(path, text: bytes | str) -> None:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def test_one_empty_cell_in_an_integer_column_costs_only_its_own_row(tmp_path, image_dir) -> None:
    # integer-looking columns, used (target) or not (n_obs): pyarrow gives up on the whole file here
    write_catalog(tmp_path / "c.csv", "objID,Z,n_obs,flag\n1,8,3,0\n2,9,,1\n3,,5,\n4,10,7,1\n")
    catalog = read_catalog(tmp_path / "c.csv")
    clean, integrity = run(catalog, image_dir)
    assert clean["id"].tolist() == ["1", "2", "4"] and clean["Z"].tolist() == [8.0, 9.0, 10.0]
    assert list(zip(integrity["row"], integrity["problem"])) == [(3, "missing_target")]
    assert clean["n_obs"].tolist() == ["3", pd.NA, "7"]  # a column the config does not use stays text


def test_malformed_lines_are_integrity_rows_and_every_other_row_goes_on(tmp_path, image_dir) -> None:
    lines = [
        b"objID,Z,note",
        b"1,8.5,ok",
        b"2,8.6,extra,field",  # line 3: an extra field
        b"3,8.7",  # line 4: a short row
        b'4,8.8,"never closed',  # line 5: an unbalanced quote
        b"5,8.9,fine",
        b"# a stray comment",  # line 7
        b"2,9.0,caf\xe9",  # line 8: Latin-1, not UTF-8
        b'3,9.1,"a quoted, multi-line',  # lines 9-10: one good record over two lines
        b'note"',
        b'4,9.2,"ab"c',  # line 11: text after a closing quote
        b"",
        b"5b,9.3,last",
    ]
    write_catalog(tmp_path / "c.csv", b"\n".join(lines) + b"\n")
    catalog = read_catalog(tmp_path / "c.csv")
    assert catalog.n_rows == 10
    clean, integrity = run(catalog, image_dir)
    assert clean["id"].tolist() == ["1", "5", "3"] and clean["note"].iloc[2] == "a quoted, multi-line\nnote"
    malformed = integrity[integrity["problem"] == "malformed_row"]
    assert malformed["row"].tolist() == [2, 3, 4, 6, 7, 9]  # data rows; good rows keep their own numbers
    details = malformed["detail"].tolist()
    for detail, line, snippet in zip(
        details,
        (3, 4, 5, 7, 8, 11),
        ("2,8.6,extra,field", "3,8.7", '4,8.8,"never closed', "# a stray comment", "caf\\xe9", '"ab"c'),
    ):
        assert detail.startswith(f"line {line}: ") and snippet in detail, detail
    assert "4 fields where the header has 3" in details[0] and "2 fields" in details[1]
    assert "comment" in details[3] and "not UTF-8" in details[4]
    assert integrity.loc[integrity["problem"] == "missing_image", "row"].tolist() == [10]  # 5b has no image


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_the_delimiter_is_detected_and_named_when_a_column_is_missing(tmp_path, image_dir, sep: str) -> None:
    write_catalog(tmp_path / "c.csv", sep.join(["objID", "Z", "name"]) + "\n" + sep.join(["1", "8.5", "a,b"]) + "\n")
    catalog = read_catalog(tmp_path / "c.csv")
    assert catalog.delimiter == sep and catalog.frame["name"].tolist() == ["a,b"]
    clean, _ = run(catalog, image_dir)
    assert clean["Z"].tolist() == [8.5]
    with pytest.raises(CatalogError, match=r"column 'metal' is not in the catalog. Columns present \(header read with"):
        run(catalog, image_dir, target_column="metal")


@pytest.mark.parametrize(
    "target",
    ["1_000", "８.５", "8.5\u00a0", " 8.5 ", "8,5", "0x10", "1e400", "-9999.0", "nan", "9.2"],
)
def test_one_rule_for_what_a_number_is(image_dir, target: str) -> None:
    frame = pd.DataFrame({"objID": ["1"], "Z": [target]})
    expected = {"1_000": "non_numeric_target", "８.５": "non_numeric_target", "8,5": "non_numeric_target",
                "0x10": "non_numeric_target", "1e400": "non_finite_target", "-9999.0": "invalid_target",
                "nan": "non_finite_target"}  # fmt: skip
    if target in expected:
        with pytest.raises(CatalogError, match=expected[target]):
            run(frame, image_dir)
    else:  # surrounding whitespace (a no-break space included) is not part of the number
        clean, integrity = run(frame, image_dir)
        assert integrity.empty and clean["Z"].tolist() == [float(target.strip())]


def test_an_id_too_long_for_a_file_name_and_a_symlink_loop_are_integrity_rows(image_dir) -> None:
    os.symlink(image_dir / "loop.png", image_dir / "loop.png")
    frame = pd.DataFrame({"objID": ["1", "x" * 300, "loop", "2"], "Z": [8.5, 8.6, 8.7, 8.8]})
    clean, integrity = run(frame, image_dir)
    assert clean["id"].tolist() == ["1", "2"]
    assert list(zip(integrity["row"], integrity["problem"])) == [(2, "unsafe_id"), (3, "unreadable_image")]
    assert "longer than a file name" in integrity["detail"].iloc[0]
    # 250 characters pass as an id, but not with the pattern's ".png": the file name is too long
    frame = pd.DataFrame({"objID": ["1", "y" * 253], "Z": [8.5, 8.6]})
    _, integrity = run(frame, image_dir)
    assert list(zip(integrity["row"], integrity["problem"])) == [(2, "unreadable_image")]
    assert "too long" in integrity["detail"].iloc[0]


def test_a_catalog_fifo_is_read_once(tmp_path, image_dir) -> None:
    fifo = tmp_path / "catalog.csv"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("objID,Z\n1,8.5\n2,9.0\n"), daemon=True)
    writer.start()
    result = {}
    reader = threading.Thread(target=lambda: result.update(text=read_catalog(fifo)), daemon=True)
    reader.start()
    reader.join(timeout=20)
    assert not reader.is_alive(), "reading the catalog FIFO blocked"
    clean, _ = run(result["text"], image_dir)
    assert clean["id"].tolist() == ["1", "2"]


@pytest.mark.parametrize("kind", ["gz", "bz2", "xz", "zip", "bom-crlf"])
def test_compressed_and_windows_catalogs(tmp_path, kind: str) -> None:
    text = b"objID,Z\r\n1,8.5\r\n2,9.0\r\n" if kind == "bom-crlf" else b"objID,Z\n1,8.5\n2,9.0\n"
    path = tmp_path / f"c.csv.{kind}"
    if kind == "gz":
        path.write_bytes(gzip.compress(text))
    elif kind == "bz2":
        path.write_bytes(bz2.compress(text))
    elif kind == "xz":
        path.write_bytes(lzma.compress(text))
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("catalog.csv", text)
    else:
        path.write_bytes(b"\xef\xbb\xbf" + text)
    frame = read_catalog(path).frame
    assert list(frame.columns) == ["objID", "Z"] and frame["objID"].tolist() == ["1", "2"]
    assert frame["Z"].tolist() == ["8.5", "9.0"]


def test_a_truth_column_must_hold_numbers(image_dir) -> None:
    frame = pd.DataFrame({"objID": ["1", "2", "3"], "Z": [8.5, 9.0, 9.1], "shortcut": ["1", "", "yes"]})
    with pytest.raises(CatalogError, match=r"saliency.truth_column: column 'shortcut' must hold numbers.*row 3"):
        run(frame, image_dir, numeric_columns={"shortcut": "saliency.truth_column"})
    clean, _ = run(frame.iloc[:2], image_dir, numeric_columns={"shortcut": "saliency.truth_column"})
    assert clean["shortcut"].tolist()[0] == 1.0 and np.isnan(clean["shortcut"].tolist()[1])


def test_a_huge_cell_costs_only_its_own_row(tmp_path) -> None:
    write_catalog(tmp_path / "c.csv", b"objID,Z,note\n1,8.5," + b"x" * (3 << 20) + b"\n2,9.0,ok\n")
    catalog = read_catalog(tmp_path / "c.csv")
    assert catalog.frame["objID"].tolist() == ["2"]
    assert catalog.malformed[0][1].startswith("line 2: a cell of more than 1048576 characters")


def test_excel_sep_line_and_non_regular_image_files(tmp_path, image_dir) -> None:
    write_catalog(tmp_path / "c.csv", b"sep=;\nobjID;Z\n1;8.5\n2;9,0\n")
    catalog = read_catalog(tmp_path / "c.csv")
    assert catalog.delimiter == ";" and list(catalog.frame.columns) == ["objID", "Z"]
    assert catalog.frame["Z"].tolist() == ["8.5", "9,0"] and not catalog.malformed
    (image_dir / "3.png").unlink()
    os.mkfifo(image_dir / "3.png")  # opening a FIFO for reading would block validation
    (image_dir / "4.png").unlink()
    (image_dir / "4.png").mkdir()
    frame = pd.DataFrame({"objID": ["1", "3", "4"], "Z": [8.5, 9.0, 9.1]})
    clean, integrity = run(frame, image_dir)
    assert clean["id"].tolist() == ["1"] and integrity["problem"].tolist() == ["unreadable_image"] * 2
    assert integrity["detail"].str.endswith("is not a regular file").all()


def test_images_are_validated_as_displayed_and_one_frame_each(tmp_path) -> None:
    """An animated GIF and a multi-page TIFF are integrity rows (not packed as their first frame); a photo
    with an EXIF orientation has its displayed size in the clean catalog; a single-frame GIF is an image."""
    folder = tmp_path / "images"
    folder.mkdir()
    first, second = (Image.fromarray(textured(seed, 20)) for seed in (1, 2))
    first.save(folder / "anim.gif", save_all=True, append_images=[second], duration=100)
    first.save(folder / "pages.tif", save_all=True, append_images=[second, first])
    exif = Image.Exif()
    exif[0x0112] = 6  # turned 90 degrees clockwise when displayed
    Image.fromarray(textured(3, 40)[:16]).save(folder / "turned.png", exif=exif)  # stored 40 wide, 16 high
    Image.fromarray(textured(4, 20)).save(folder / "plain.gif")
    frame = pd.DataFrame({"objID": ["anim.gif", "pages.tif", "turned.png", "plain.gif"], "Z": [8.5, 8.6, 8.7, 8.8]})
    clean, integrity = run(frame, folder, images=str(folder / "{id}"))
    assert list(zip(integrity["row"], integrity["problem"])) == [(1, "multi_frame"), (2, "multi_frame")]
    assert "GIF of 2 frames" in integrity["detail"].iloc[0] and "TIFF of 3 frames" in integrity["detail"].iloc[1]
    assert clean["id"].tolist() == ["turned.png", "plain.gif"]
    assert clean["image_width"].tolist() == [16, 20] and clean["image_height"].tolist() == [40, 20]


def test_fits_cutouts_with_blank_pixels_warn_and_an_empty_extension_is_a_problem(tmp_path) -> None:
    from astropy.io import fits

    folder = tmp_path / "fits"
    folder.mkdir()
    rng = np.random.default_rng(8)
    for name in ("a", "b", "c"):
        flux = rng.normal(0.01, 0.002, (16, 16)).astype(np.float32)
        flux[6:10, 6:10] += 0.05
        if name == "b":
            flux[0, :3] = np.nan  # the edge of a survey footprint
        hdus = [fits.PrimaryHDU(), fits.ImageHDU(flux, name="SCI")] if name != "c" else [fits.PrimaryHDU()]
        fits.HDUList(hdus).writeto(folder / f"{name}.fits.gz")
    frame = pd.DataFrame({"objID": ["a", "b", "c"], "Z": [8.5, 9.0, 9.2]})
    decoding = Decoding("asinh", 0.1, "SCI")
    clean, integrity = run(frame, folder, images=str(folder / "{id}.fits.gz"), decoding=decoding)
    assert clean["id"].tolist() == ["a", "b"]  # the warning keeps its row
    problems = integrity.set_index("id")
    assert problems.loc["b", "problem"] == "non_finite_pixels" and "3 of 256 pixels" in problems.loc["b", "detail"]
    assert problems.loc["c", "problem"] == "unsupported_image" and "'SCI'" in problems.loc["c", "detail"]
