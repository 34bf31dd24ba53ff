import hashlib
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from saliency_audit.data.image_io import (
    Decoding,
    ImageProblem,
    center_crop_pad,
    crop_start,
    decode_image,
    image_path,
    image_size,
    load_image,
    load_mask,
    nearly_constant,
    open_packed,
    packed_writer,
    read_rows,
    shown_rgb,
    stretch_to_uint8,
)
from saliency_audit.data.packing import PackedIndex, concatenate, pack
from saliency_audit.runtime.atomic_io import write_parquet
from saliency_audit.runtime.checksums import recorded_sha256
from saliency_audit.runtime.shards import shard_rows


def ramp(h: int, w: int) -> np.ndarray:
    return np.arange(h * w * 3, dtype=np.uint32).reshape(h, w, 3).astype(np.uint8)


@pytest.mark.parametrize(
    ("shape", "size", "src", "dst"),
    [
        ((64, 64), 48, (slice(8, 56), slice(8, 56)), (slice(0, 48), slice(0, 48))),
        ((65, 64), 48, (slice(8, 56), slice(8, 56)), (slice(0, 48), slice(0, 48))),
        ((32, 32), 48, (slice(0, 32), slice(0, 32)), (slice(8, 40), slice(8, 40))),
        ((31, 80), 48, (slice(0, 31), slice(16, 64)), (slice(8, 39), slice(0, 48))),
        ((48, 48), 48, (slice(0, 48), slice(0, 48)), (slice(0, 48), slice(0, 48))),
    ],
)
def test_center_crop_pad(shape: tuple[int, int], size: int, src: tuple, dst: tuple) -> None:
    image = ramp(*shape)
    out = center_crop_pad(image, size)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[dst], image[src])
    padding = np.ones((size, size), dtype=bool)
    padding[dst] = False
    assert (out[padding] == 0).all()


def test_crop_keeps_the_centre_pixel() -> None:
    image = np.zeros((101, 101, 3), dtype=np.uint8)
    image[50, 50] = 255
    assert center_crop_pad(image, 51)[25, 25, 0] == 255


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "LA", "CMYK"])
def test_load_rgb_converts_modes(tmp_path, mode: str) -> None:
    rgb = ramp(20, 30)
    path = tmp_path / "x.png" if mode != "CMYK" else tmp_path / "x.tif"
    Image.fromarray(rgb).convert(mode).save(path)
    out = load_image(path, 10**6)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.asarray(Image.fromarray(rgb).convert(mode).convert("RGB")))


def reference_stretch(values: np.ndarray, sky: np.ndarray | float | None = None) -> np.ndarray:
    """The documented rule, written out: 0.5th and 99.5th percentiles of the finite values to 0 and 255; a
    non-finite value takes ``sky`` (its band's median)."""
    lo, hi = np.percentile(values[np.isfinite(values)], [0.5, 99.5])
    values = np.where(np.isfinite(values), values, np.nan if sky is None else sky)
    return np.nan_to_num(np.clip(np.round((values - lo) / (hi - lo) * 255), 0, 255)).astype(np.uint8)


def test_a_12_bit_camera_image_uses_the_whole_8_bit_range(tmp_path) -> None:
    values = np.random.default_rng(0).integers(0, 4096, (40, 50)).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "x.png")
    out = load_image(tmp_path / "x.png", 10**6)
    np.testing.assert_array_equal(out[..., 0], reference_stretch(values.astype(float)))
    assert (out[..., 0] == out[..., 2]).all() and out.max() == 255 and out.mean() > 100  # not nearly black


def test_16_bit_images_just_above_and_below_255_pack_alike(tmp_path) -> None:
    base = np.random.default_rng(1).integers(0, 255, (32, 32)).astype(np.uint16)
    packed = []
    for peak in (255, 256):
        values = base.copy()
        values[0, 0] = peak
        Image.fromarray(values).save(tmp_path / f"{peak}.png")
        packed.append(load_image(tmp_path / f"{peak}.png", 10**6).astype(int))
    assert np.abs(packed[0] - packed[1]).max() <= 1  # no 257x jump between the two


@pytest.mark.parametrize("kind", ["tiff", "fits"])
def test_float_images_of_small_fluxes_are_stretched_not_blackened(tmp_path, kind: str) -> None:
    from astropy.io import fits

    rng = np.random.default_rng(2)
    flux = rng.normal(0.01, 0.003, (48, 48)).astype(np.float32)
    flux[20:28, 20:28] += 0.05  # a source
    flux[0, :5] = np.nan  # blank pixels
    path = tmp_path / f"x.{kind}"
    if kind == "tiff":
        Image.fromarray(flux).save(path)
    else:
        fits.PrimaryHDU(flux).writeto(path)
        flux = np.flipud(flux)  # FITS rows run bottom-up: Pillow shows the first row at the bottom, as ds9 does
    out, filled = decode_image(path, 10**6)
    blank = np.isnan(flux)
    sky = np.median(flux[~blank])  # a blank pixel takes the median, not black
    np.testing.assert_array_equal(out[..., 1], reference_stretch(flux.astype(np.float64), sky))
    assert out[21:27, 21:27].min() > 200 and np.median(out) < 150 and filled == 5
    assert (np.abs(out[blank].astype(int) - np.median(out)) <= 1).all()


def test_a_three_band_fits_cube_is_read_as_colour_and_other_cubes_by_image_channels(tmp_path) -> None:
    from astropy.io import fits

    rng = np.random.default_rng(4)
    cube = rng.normal(0.01, 0.002, (3, 40, 40)).astype(np.float32)  # g, r, i fluxes of order 0.01
    cube[:, 15:25, 15:25] += np.array([0.02, 0.04, 0.06], np.float32)[:, None, None]  # a red source
    cube[1, 0, :4] = np.nan
    fits.PrimaryHDU(cube).writeto(tmp_path / "cube.fits")
    out = load_image(tmp_path / "cube.fits", 10**6)
    sky = np.nanmedian(cube.astype(np.float64), axis=(1, 2))  # per band
    shown = np.flip(cube.astype(np.float64), axis=1).transpose(1, 2, 0)  # rows bottom-up, as one band is shown
    np.testing.assert_array_equal(out, reference_stretch(shown, sky))  # one stretch for the three bands
    source = out[15:25, 15:25].reshape(-1, 3).mean(axis=0)
    assert source[0] < source[1] < source[2] and (out[39, :4, 1] > 0).all()
    fits.PrimaryHDU(cube[None]).writeto(tmp_path / "4d.fits")  # 1 x 3 x H x W: the same image
    np.testing.assert_array_equal(load_image(tmp_path / "4d.fits", 10**6), out)

    five = np.concatenate([cube, cube[:2] * 0.5])  # u, g, r, i, z: five bands, stretched together
    fits.PrimaryHDU(five).writeto(tmp_path / "five.fits")
    with pytest.raises(ImageProblem) as error:
        load_image(tmp_path / "five.fits", 10**6)
    assert error.value.problem == "unsupported_image"
    assert "holds 5 bands, but image.channels is 3" in error.value.detail
    out5 = load_image(tmp_path / "five.fits", 10**6, Decoding("linear", 0.1, None, channels=5))
    sky5 = np.nanmedian(five.astype(np.float64), axis=(1, 2))
    shown5 = np.flip(five.astype(np.float64), axis=1).transpose(1, 2, 0)
    np.testing.assert_array_equal(out5, reference_stretch(shown5, sky5))
    with pytest.raises(ImageProblem, match="holds 3 bands, but image.channels is 5"):
        load_image(tmp_path / "cube.fits", 10**6, Decoding("linear", 0.1, None, channels=5))
    blank = cube.copy()
    blank[2] = np.nan
    fits.PrimaryHDU(blank).writeto(tmp_path / "blank.fits")
    with pytest.raises(ImageProblem, match="band 3 of 3 holds no finite value"):
        load_image(tmp_path / "blank.fits", 10**6)


def test_nearly_constant_images() -> None:
    rng = np.random.default_rng(3)
    assert nearly_constant(np.zeros((32, 32, 3), dtype=np.uint8))
    speckled = np.full((32, 32, 3), 40, dtype=np.uint8)
    speckled[0, :3] = 255  # a few hot pixels do not make an image
    assert nearly_constant(speckled)
    assert not nearly_constant(rng.integers(20, 40, (32, 32, 3)).astype(np.uint8))
    assert not nearly_constant(np.asarray(Image.fromarray(ramp(32, 32))))


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: None, "missing_image"),
        (lambda p: p.write_bytes(b""), "unreadable_image"),
        (lambda p: p.write_text("not an image at all"), "unreadable_image"),
    ],
)
def test_load_rgb_problems(tmp_path, make, problem: str) -> None:
    path = tmp_path / "x.jpg"
    make(path)
    with pytest.raises(ImageProblem) as error:
        load_image(path, 10**6)
    assert error.value.problem == problem and str(path) in error.value.detail


def test_truncated_jpeg_is_unreadable(tmp_path) -> None:
    path = tmp_path / "x.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:400])
    with pytest.raises(ImageProblem, match="unreadable_image"):
        load_image(path, 10**6)


def test_oversized_image_is_refused_before_decoding(tmp_path) -> None:
    path = tmp_path / "x.png"
    Image.new("RGB", (200, 100)).save(path)
    with pytest.raises(ImageProblem) as error:
        load_image(path, max_pixels=10_000)
    assert error.value.problem == "image_too_large" and "200x100" in error.value.detail


def test_pack_round_trip_equals_pil_decode(tmp_path) -> None:
    rng = np.random.default_rng(1)
    paths = []
    for i, (h, w) in enumerate([(64, 64), (40, 70), (80, 50), (48, 48), (64, 64)]):
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, quality=85)
        paths.append(str(path))
    out = tmp_path / "packed.npy"
    pack(paths, 48, out, max_pixels=10**6, workers=2, chunk=2)
    packed = open_packed(out)
    assert isinstance(packed, np.memmap) and packed.shape == (5, 48, 48, 3)
    for row, path in enumerate(paths):
        expected = center_crop_pad(np.asarray(Image.open(path).convert("RGB")), 48)
        np.testing.assert_array_equal(packed[row], expected)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [".packed.npy.sha256"]  # no temporary file


def test_failed_pack_leaves_no_file(tmp_path) -> None:
    good = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(good)
    out = tmp_path / "packed.npy"
    with pytest.raises(ImageProblem):
        pack([str(good), str(tmp_path / "missing.png")], 8, out, max_pixels=10**6)
    assert list(tmp_path.iterdir()) == [good]


def test_packed_writer_writes_a_loadable_array_and_refuses_a_short_or_foreign_one(tmp_path) -> None:
    images = np.random.default_rng(3).integers(0, 255, (7, 4, 4, 3), dtype=np.uint8)
    with packed_writer(tmp_path / "ok.npy", 7, 4, 3) as write:
        write(images[:3])
        write(images[3:])
    np.testing.assert_array_equal(open_packed(tmp_path / "ok.npy"), images)
    with pytest.raises(ValueError, match="received 3 of its 7 images"):
        with packed_writer(tmp_path / "short.npy", 7, 4, 3) as write:
            write(images[:3])
    with pytest.raises(ValueError, match="cannot append a uint8 block of shape"):
        with packed_writer(tmp_path / "foreign.npy", 7, 5, 3) as write:
            write(images)


def test_five_band_cubes_pack_and_gather_as_five_planes(tmp_path) -> None:
    from astropy.io import fits

    rng = np.random.default_rng(5)
    decoding = Decoding("asinh", 0.1, None, channels=5)
    paths = []
    for i in range(5):
        paths.append(str(tmp_path / f"{i}.fits"))
        fits.PrimaryHDU(rng.normal(0.01, 0.003, (5, 20, 18)).astype(np.float32)).writeto(paths[-1])
    pack(paths, 16, tmp_path / "one.npy", max_pixels=10**6, decoding=decoding)
    packed = open_packed(tmp_path / "one.npy")
    assert packed.shape == (5, 16, 16, 5)
    np.testing.assert_array_equal(packed[3], center_crop_pad(load_image(paths[3], 10**6, decoding), 16))
    pack(paths[:2], 16, tmp_path / "a.npy", max_pixels=10**6, decoding=decoding)
    pack(paths[2:], 16, tmp_path / "b.npy", max_pixels=10**6, decoding=decoding)
    concatenate([tmp_path / "a.npy", tmp_path / "b.npy"], tmp_path / "gathered.npy", rows=5)
    np.testing.assert_array_equal(open_packed(tmp_path / "gathered.npy"), packed)


def test_jpeg_and_png_are_rgb_or_gray_and_nothing_else(tmp_path) -> None:
    rgb = np.random.default_rng(6).integers(0, 255, (12, 10, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    gray = load_image(tmp_path / "x.png", 10**6, Decoding("linear", 0.1, None, channels=1))
    assert gray.shape == (12, 10, 1)
    np.testing.assert_array_equal(gray[..., 0], np.asarray(Image.fromarray(rgb).convert("L")))
    with pytest.raises(ImageProblem) as error:
        load_image(tmp_path / "x.png", 10**6, Decoding("linear", 0.1, None, channels=5))
    assert error.value.problem == "unsupported_image" and "image.channels is 5: give FITS files" in error.value.detail


def test_figures_show_any_number_of_bands_as_rgb() -> None:
    pixels = np.random.default_rng(7).integers(0, 255, (2, 4, 4, 5), dtype=np.uint8)
    np.testing.assert_array_equal(shown_rgb(pixels[..., :3]), pixels[..., :3])
    np.testing.assert_array_equal(shown_rgb(pixels[..., :1]), np.repeat(pixels[..., :1], 3, axis=-1))
    two = shown_rgb(pixels[..., :2])
    np.testing.assert_array_equal(two[..., 1], (pixels[..., 0].astype(int) + pixels[..., 1]) // 2)
    np.testing.assert_array_equal(two[..., [0, 2]], pixels[..., :2])
    np.testing.assert_array_equal(shown_rgb(pixels), pixels[..., [0, 2, 4]])  # first, middle, last


def test_read_rows_matches_fancy_indexing(tmp_path) -> None:
    images = np.random.default_rng(0).integers(0, 255, (20, 5, 5, 3), dtype=np.uint8)
    np.save(tmp_path / "p.npy", images)
    packed = open_packed(tmp_path / "p.npy")
    for rows in (np.arange(3, 11), np.array([0]), np.array([1, 4, 9]), np.arange(20), np.array([5, 3, 3, 4, 19])):
        np.testing.assert_array_equal(read_rows(packed, rows), images[rows])


def test_gathered_parts_equal_one_pack(tmp_path) -> None:
    rng = np.random.default_rng(2)
    paths = []
    for i in range(7):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    pack(paths, 16, tmp_path / "one.npy", max_pixels=10**6)
    parts = []
    for i in range(3):
        rows = shard_rows(len(paths), 3, i)
        parts.append(tmp_path / f"part-{i}.npy")
        pack([paths[r] for r in rows], 16, parts[-1], max_pixels=10**6)
    concatenate(parts, tmp_path / "gathered.npy", rows=7, chunk=2)
    np.testing.assert_array_equal(open_packed(tmp_path / "gathered.npy"), open_packed(tmp_path / "one.npy"))
    for packed in (tmp_path / "one.npy", tmp_path / "gathered.npy", *parts):  # what the reading jobs check
        assert recorded_sha256(packed) == hashlib.sha256(packed.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="hold 7 images, not 8"):
        concatenate(parts, tmp_path / "wrong.npy", rows=8)
    assert not (tmp_path / "wrong.npy").exists()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda path: path.write_bytes(b"\0" * 400), "no .npy header"),
        (lambda path: path.write_bytes(path.read_bytes()[:200]), "mmap length is greater than file size"),
        (lambda path: np.save(path, np.zeros((2, 4, 4), np.float32)), "not N x S x S x C uint8"),
    ],
)
def test_a_damaged_packed_file_is_named(tmp_path, damage, message) -> None:
    path = tmp_path / "part-1.npy"
    np.save(path, np.zeros((10, 4, 4, 3), np.uint8))
    damage(path)
    with pytest.raises(ValueError, match=message) as error:
        open_packed(path)
    assert str(path) in str(error.value)


@settings(max_examples=200, deadline=None)
@example(height=63, width=64, size=64, seed=0)  # one pixel short of image.size: padded, not stretched
@given(height=st.integers(1, 40), width=st.integers(1, 40), size=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_crop_pad_places_every_pixel_at_its_centred_offset(height: int, width: int, size: int, seed: int) -> None:
    image = np.random.default_rng(seed).integers(1, 255, (height, width, 3), dtype=np.uint8)  # no zeros
    out = center_crop_pad(image, size)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    # output pixel (i, j) shows source pixel (i + top, j + left), or zero padding where there is none
    top, left = crop_start(height, size), crop_start(width, size)
    rows, cols = np.arange(size)[:, None] + top, np.arange(size)[None, :] + left
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    np.testing.assert_array_equal(out[inside], image[rows.clip(0, height - 1), cols.clip(0, width - 1)][inside])
    assert not out[~inside].any()
    # padding and cropping back is lossless
    big = max(height, width, size)
    if height == width:
        np.testing.assert_array_equal(center_crop_pad(center_crop_pad(image, big), height), image)


def test_the_packed_index_maps_ids_to_rows_one_way_everywhere(tmp_path) -> None:
    index = PackedIndex.from_ids(["10", "7", "x-3", "5"])
    write_parquet(index.table(), tmp_path / "index.parquet")
    again = PackedIndex.read(tmp_path / "index.parquet")
    assert list(again.ids) == ["10", "7", "x-3", "5"] and len(again) == 4
    np.testing.assert_array_equal(again.rows(["5", "10", "5"]), [3, 0, 3])
    with pytest.raises(KeyError, match="'8' is not in the packed images"):
        again.rows(["7", "8"])
    with pytest.raises(ValueError, match="'7' repeats"):
        PackedIndex.from_ids(["7", "1", "7"])
    assert np.concatenate([again.shard(i, 3) for i in range(3)]).tolist() == [0, 1, 2, 3]
    shuffled = again.table().iloc[[1, 0, 2, 3]]
    write_parquet(shuffled, tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="rows are not 0..3 in order"):
        PackedIndex.read(tmp_path / "bad.parquet")


ORIENTATION = 0x0112  # the EXIF tag
# What a viewer shows for each EXIF orientation, from the stored rows x columns (the EXIF 2.3 definitions):
AS_DISPLAYED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # turned 180 degrees
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.swapaxes(0, 1),  # transposed about the main diagonal
    6: lambda a: np.rot90(a, -1),  # turned 90 degrees clockwise
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # transposed about the other diagonal
    8: lambda a: np.rot90(a, 1),  # turned 90 degrees counter-clockwise
}


def save_oriented(path, pixels: np.ndarray, orientation: int, **options) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(pixels).save(path, exif=exif, **options)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_an_exif_orientation_is_applied_as_the_image_is_displayed(tmp_path, orientation: int) -> None:
    """The catalog's pixel positions and ellipse angles are those of the image as displayed."""
    stored = ramp(12, 20)  # rows differ from columns, so every orientation gives another array
    path = tmp_path / "x.png"
    save_oriented(path, stored, orientation)
    displayed = AS_DISPLAYED[orientation](stored)
    np.testing.assert_array_equal(load_image(path, 10**6), displayed)
    height, width = displayed.shape[:2]
    assert image_size(path) == (width, height)
    mask = np.zeros((12, 20), dtype=bool)
    mask[:3, :5] = True  # drawn on the stored pixels' top-left corner
    save_oriented(tmp_path / "m.png", mask.astype(np.uint8) * 255, orientation)
    np.testing.assert_array_equal(load_mask(tmp_path / "m.png", 10**6), AS_DISPLAYED[orientation](mask))


@pytest.mark.parametrize("suffix", [".jpg", ".tif", ".webp"])
def test_an_orientation_6_photo_is_turned_in_every_format(tmp_path, suffix: str) -> None:
    stored = np.kron(ramp(6, 10), np.ones((8, 8, 1), dtype=np.uint8))  # 48 x 80, blocks that survive JPEG
    path = tmp_path / f"x{suffix}"
    save_oriented(path, stored, 6, **({"quality": 100} if suffix != ".tif" else {}))
    plain = tmp_path / f"plain{suffix}"
    Image.fromarray(stored).save(plain, **({"quality": 100} if suffix != ".tif" else {}))
    with Image.open(plain) as image:
        decoded = np.asarray(image.convert("RGB"))  # the stored pixels as the codec gives them
    out = load_image(path, 10**6)
    assert out.shape == (80, 48, 3) and image_size(path) == (48, 80)
    np.testing.assert_array_equal(out, np.rot90(decoded, -1))
    assert load_mask(path, 10**6).shape == (80, 48)


def test_an_oriented_8_bit_tiff_is_read_whole(tmp_path) -> None:
    """Pillow's memory-mapped read of an uncompressed grayscale TIFF ignores its orientation (the rows come
    back scrambled); images are read through an open file instead."""
    stored = ramp(12, 20)[..., 0]
    displayed = np.rot90(stored, -1)
    for pixels, expected in ((stored, displayed), (stored.astype(np.uint16) * 200, stretch_to_uint8(displayed))):
        save_oriented(tmp_path / "x.tif", pixels, 6)
        out = load_image(tmp_path / "x.tif", 10**6)
        assert out.shape == (20, 12, 3)
        np.testing.assert_array_equal(out[..., 0], expected)
        np.testing.assert_array_equal(load_mask(tmp_path / "x.tif", 10**6), displayed != 0)


def frames(count: int) -> list[Image.Image]:
    return [Image.fromarray(np.full((16, 24, 3), 60 * k, dtype=np.uint8)) for k in range(count)]


@pytest.mark.parametrize(("name", "count"), [("x.tif", 3), ("x.gif", 2)])
def test_a_multi_frame_image_is_refused_not_cut_to_its_first_frame(tmp_path, name: str, count: int) -> None:
    path = tmp_path / name
    first, *rest = frames(count)
    first.save(path, save_all=True, append_images=rest, **({"duration": 100} if name.endswith(".gif") else {}))
    with Image.open(path) as image:
        assert image.n_frames == count
    for load in (load_image, load_mask):
        with pytest.raises(ImageProblem) as error:
            load(path, 10**6)
        assert error.value.problem == "multi_frame" and f"{count} frames" in error.value.detail
    single = tmp_path / f"one{path.suffix}"
    first.save(single)
    np.testing.assert_array_equal(load_image(single, 10**6), np.asarray(first))
    assert image_size(single) == (24, 16)


def test_image_max_pixels_is_the_only_size_limit(tmp_path) -> None:
    """A valid 10000 x 10000 PNG (100 Mpx, above Pillow's own 89 Mpx decompression-bomb limit) is too large
    under the default image.max_pixels, and loads once image.max_pixels allows it."""
    pillows = Image.MAX_IMAGE_PIXELS
    path = tmp_path / "big.png"
    Image.new("1", (10_000, 10_000)).save(path)  # 12 kB
    for load in (load_image, load_mask):
        with pytest.raises(ImageProblem) as error:
            load(path, 25_000_000)
        assert error.value.problem == "image_too_large"
        assert error.value.detail == f"{path} is 100000000 pixels, above image.max_pixels=25000000"
    assert image_size(path) == (10_000, 10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a DecompressionBombWarning below image.max_pixels
        assert load_mask(path, 120_000_000).shape == (10_000, 10_000)
    assert Image.MAX_IMAGE_PIXELS == pillows  # Pillow's own limit is left as it was


def test_pillow_s_own_limit_never_decides(tmp_path, monkeypatch) -> None:
    """Whatever Image.MAX_IMAGE_PIXELS is (here far below the image), image.max_pixels alone decides, in
    threads too, and the global is restored afterwards."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    Image.fromarray(ramp(100, 120)).save(tmp_path / "x.png")  # 12000 pixels: above twice Pillow's limit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with ThreadPoolExecutor(4) as pool:
            loaded = list(pool.map(lambda _: load_image(tmp_path / "x.png", 12_000), range(16)))
    assert all(out.shape == (100, 120, 3) for out in loaded)
    with pytest.raises(ImageProblem) as error:
        load_image(tmp_path / "x.png", 11_999)
    assert error.value.problem == "image_too_large" and "120x100" in error.value.detail
    assert Image.MAX_IMAGE_PIXELS == 1_000


@pytest.mark.parametrize("suffix", [".png", ".webp", ".jpg"])
def test_exif_that_cannot_be_parsed_leaves_the_image_as_stored(tmp_path, suffix: str) -> None:
    stored = ramp(12, 20)
    path = tmp_path / f"x{suffix}"
    Image.fromarray(stored).save(
        path, exif=b"Exif\x00\x00not a TIFF header", **({"lossless": True} if suffix == ".webp" else {})
    )
    assert load_image(path, 10**6).shape == (12, 20, 3) and image_size(path) == (20, 12)
    if suffix != ".jpg":
        np.testing.assert_array_equal(load_image(path, 10**6), stored)


def test_a_fits_image_is_found_in_its_extension_compressed_or_gzipped(tmp_path) -> None:
    from astropy.io import fits

    rng = np.random.default_rng(5)
    sci = rng.normal(0.01, 0.002, (32, 40)).astype(np.float32)
    weight = np.ones((32, 40), np.float32)
    hdus = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sci, name="SCI"), fits.ImageHDU(weight, name="WHT")])
    hdus.writeto(tmp_path / "x.fits")
    hdus.writeto(tmp_path / "x.fits.gz")
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(sci, name="SCI")]).writeto(tmp_path / "x.fits.fz")
    expected = reference_stretch(np.flipud(sci).astype(np.float64))
    for name in ("x.fits", "x.fits.gz", "x.fits.fz"):  # the first HDU with an image, whatever the packing
        out = load_image(tmp_path / name, 10**6)
        assert out.shape == (32, 40, 3) and (out[..., 0] == out[..., 2]).all()
        assert np.abs(out[..., 0].astype(int) - expected).max() <= (0 if name != "x.fits.fz" else 3), name
    plain = load_image(tmp_path / "x.fits", 10**6)
    for hdu in (1, "SCI"):
        np.testing.assert_array_equal(load_image(tmp_path / "x.fits", 10**6, Decoding("linear", 0.1, hdu)), plain)
    assert np.ptp(load_image(tmp_path / "x.fits", 10**6, Decoding("linear", 0.1, "WHT"))) == 0  # that one
    with pytest.raises(ImageProblem) as error:
        load_image(tmp_path / "x.fits", 10**6, Decoding("linear", 0.1, "ERR"))
    assert error.value.problem == "unsupported_image" and "image.hdu" in error.value.detail
    assert "1: SCI" in error.value.detail and "2: WHT" in error.value.detail
    with pytest.raises(ImageProblem, match="image_too_large|above image.max_pixels"):
        load_image(tmp_path / "x.fits.gz", 1000)  # from the header, before the data
    fits.HDUList([fits.PrimaryHDU()]).writeto(tmp_path / "empty.fits")
    with pytest.raises(ImageProblem, match="holds no image"):
        load_image(tmp_path / "empty.fits", 10**6)


@pytest.mark.parametrize("softening", [0.02, 0.1, 0.5])
def test_the_asinh_and_zscale_stretches_equal_astropys(softening: float) -> None:
    from astropy.visualization import AsinhStretch, ManualInterval, ZScaleInterval

    rng = np.random.default_rng(6)
    flux = rng.normal(0.01, 0.002, (64, 64))
    flux[28:36, 28:36] += np.linspace(0.01, 1.0, 64).reshape(8, 8)  # a source with a bright core
    lo, hi = np.percentile(flux, [0.5, 99.9])
    expected = AsinhStretch(softening)(ManualInterval(lo, hi)(flux, clip=True))
    out = stretch_to_uint8(flux, Decoding("asinh", softening, None))
    np.testing.assert_array_equal(out, np.round(expected * 255).astype(np.uint8))
    zlo, zhi = ZScaleInterval().get_limits(flux)
    zscale = stretch_to_uint8(flux, Decoding("zscale", softening, None))
    np.testing.assert_array_equal(zscale, np.round(np.clip((flux - zlo) / (zhi - zlo), 0, 1) * 255).astype(np.uint8))


def test_one_fits_file_per_band_reads_as_the_cube_of_those_bands(tmp_path) -> None:
    from astropy.io import fits

    rng = np.random.default_rng(9)
    cube = rng.normal(0.01, 0.002, (3, 24, 24)).astype(np.float32)
    cube[:, 8:16, 8:16] += np.array([0.06, 0.04, 0.02], np.float32)[:, None, None]  # i, r, g: a red source
    fits.PrimaryHDU(cube).writeto(tmp_path / "cube.fits")
    for band, plane in zip("irg", cube):
        (tmp_path / band).mkdir()
        fits.PrimaryHDU(plane).writeto(tmp_path / band / "obj1.fits")
    decoding = Decoding("asinh", 0.1, None, ("i", "r", "g"))
    path = image_path(str(tmp_path / "{band}" / "{id}.fits"), "obj1")
    assert path == str(tmp_path / "{band}" / "obj1.fits")
    cube_image = load_image(tmp_path / "cube.fits", 10**6, decoding)
    np.testing.assert_array_equal(load_image(path, 10**6, decoding), cube_image)
    (tmp_path / "g" / "obj1.fits").unlink()
    with pytest.raises(ImageProblem) as error:
        load_image(path, 10**6, decoding)
    assert error.value.problem == "missing_image" and str(tmp_path / "g" / "obj1.fits") in error.value.detail
    fits.PrimaryHDU(cube[2, :20]).writeto(tmp_path / "g" / "obj1.fits")
    with pytest.raises(ImageProblem, match="the bands of an image must be aligned cutouts"):
        load_image(path, 10**6, decoding)
