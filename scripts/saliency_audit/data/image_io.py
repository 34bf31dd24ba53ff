"""The one image loader: any PIL format or FITS file to H x W x C uint8, centre crop/pad, packed arrays.

Every stage that needs pixels goes through here, so a catalog image is read the
same way when it is validated, packed and shown in a figure.
"""

import math
import os
import re
import stat
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
from PIL import ExifTags, Image


class ImageProblem(Exception):
    """An image that cannot be used; ``problem`` is the integrity-table code."""

    def __init__(self, problem: str, detail: str) -> None:
        super().__init__(f"{problem}: {detail}")
        self.problem = problem
        self.detail = detail


# Pillow modes with more than 8 bits per sample: 16- and 32-bit integers, 32-bit floats.
DEEP_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
STRETCH_PERCENTILES = (0.5, 99.5)
# Formats whose first frame is the image as displayed and whose other frames are not pictures of it:
# a JPEG with a multi-picture extension (MPO: a phone's depth or gain map), a layered PSD (frame 0 is
# the composite). Any other image of several frames (an animated GIF, PNG or WebP, a multi-page TIFF)
# is a multi_frame problem: no one frame is "the" image.
FIRST_FRAME_FORMATS = frozenset({"MPO", "PSD"})
# What turns the stored pixels into the displayed image, per EXIF orientation (1: nothing); 5 to 8
# exchange width and height.
DISPLAYED = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
T = TypeVar("T")


@dataclass(frozen=True)
class Decoding:
    """How pixels of more than 8 bits (16-bit and float images, FITS) become the 8-bit image the model
    sees (``image.stretch``, ``image.softening``), and which extension of a FITS file holds the image
    (``image.hdu``: a number or EXTNAME; None: the first with an image). With ``bands``
    (``image.bands``), an image is one FITS file per band: its path holds ``{band}``. ``channels``
    (``image.channels``) is the number of bands every image must have: the model's input planes."""

    stretch: str
    softening: float
    hdu: int | str | None
    bands: tuple[str, ...] = ()
    channels: int = 3

    @classmethod
    def from_config(cls, image: dict[str, Any]) -> "Decoding":
        bands = tuple(image.get("bands") or ())
        return cls(image["stretch"], image["softening"], image["hdu"], bands, input_channels(image))


def input_channels(image: dict[str, Any]) -> int:
    """The planes of every image (``image.channels``; unset: one per ``image.bands``, else 3, red green blue)."""
    if image.get("channels") is not None:
        return int(image["channels"])
    return len(image.get("bands") or ()) or 3


BAND = "{band}"  # the placeholder of the band in a per-band image path


def image_path(pattern: str, image_id: str) -> str:
    """The image path of one id: ``{id}`` filled, ``{band}`` (per-band files) kept for ``decode_image``."""
    return pattern.format(id=image_id, band=BAND)


STRETCHES = ("linear", "asinh", "zscale")  # the schema's enum of image.stretch
ASINH_PERCENTILES = (0.5, 99.9)  # an asinh stretch keeps the bright cores that a linear one saturates


def stretch_limits(values: np.ndarray, method: str) -> tuple[float, float]:
    """The values that become 0 and 255: the 0.5th and 99.5th percentiles (``linear``), the 0.5th and
    99.9th (``asinh``), or IRAF's zscale interval (``zscale``: the range about the median that the
    sky's noise spans, as ds9 shows an image)."""
    if method == "zscale":
        from astropy.visualization import ZScaleInterval  # noqa: PLC0415  (only where a zscale is asked for)

        lo, hi = ZScaleInterval().get_limits(values)
        return float(lo), float(hi)
    if method not in STRETCHES:
        raise ValueError(f"image.stretch {method!r} is not one of {', '.join(STRETCHES)}")
    lo, hi = np.percentile(values, ASINH_PERCENTILES if method == "asinh" else STRETCH_PERCENTILES)
    return float(lo), float(hi)


def stretch_to_uint8(values: np.ndarray, decoding: Decoding | None = None) -> np.ndarray:
    """Scale an image of more than 8 bits (or of floats) to 0..255 between its ``stretch_limits``:
    linearly, or for ``asinh`` as asinh(x / a) / asinh(1 / a) of the linear x in 0..1 (a: the
    softening, astropy's ``AsinhStretch`` convention: linear below about a, logarithmic above).
    Without ``decoding``, linearly between the 0.5th and 99.5th percentiles.

    Such files carry no scale that holds across images (a 12-bit camera in a 16-bit
    container, fluxes of order 0.01 in a float FITS): a fixed rule would pack many of
    them black. Per image, the limits always span the 8-bit range, at the cost of the
    absolute brightness between images. The limits come from the finite values; a non-finite
    one takes its band's median (``fill_non_finite``; the bands are the leading axes).
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, dtype=np.uint8)
    method = "linear" if decoding is None else decoding.stretch
    lo, hi = stretch_limits(values[finite], method)
    values = fill_non_finite(values.reshape(-1, *values.shape[-2:]))[0].reshape(values.shape)
    scaled = np.clip((values - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(values)
    if method == "asinh" and decoding is not None:
        scaled = np.arcsinh(scaled / decoding.softening) / np.arcsinh(1.0 / decoding.softening)
    return np.clip(np.round(scaled * 255.0), 0, 255).astype(np.uint8)


def fill_non_finite(bands: np.ndarray) -> tuple[np.ndarray, int]:
    """``bands`` (B x H x W) with every NaN or infinite pixel replaced by its band's median (the sky, in a
    cutout), and how many were replaced: a blank pixel is not shown as black, which the model would
    learn as a feature."""
    finite = np.isfinite(bands)
    count = int(bands.size - finite.sum())
    if not count:
        return bands, 0
    filled = bands.copy()
    for band, ok in zip(filled, finite):
        band[~ok] = np.median(band[ok]) if ok.any() else 0.0
    return filled, count


FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fits.fz", ".fz")


def is_fits(path: str | os.PathLike) -> bool:
    """A FITS file, by its name (gzip or tile compressed too) or its first card."""
    if str(path).lower().endswith(FITS_SUFFIXES):
        return True
    with open(path, "rb") as handle:
        return handle.read(9) == b"SIMPLE  ="


def _fits_hdu(hdus: Any, wanted: int | str | None, path: str | os.PathLike) -> Any:
    """The HDU named by ``image.hdu``, or the first that holds an image of at least two axes."""
    if wanted is None:
        for hdu in hdus:
            if getattr(hdu, "is_image", False) and len(hdu.shape) >= 2:
                return hdu
        raise ImageProblem("unsupported_image", f"{path} holds no image (no HDU of two or more axes)")
    try:
        return hdus[wanted]
    except (KeyError, IndexError):
        names = [f"{k}: {hdu.name}" for k, hdu in enumerate(hdus)]
        raise ImageProblem(
            "unsupported_image", f"{path} has no extension {wanted!r} (config key image.hdu); it has {names}"
        ) from None


def fits_bands(path: str | os.PathLike, max_pixels: float, hdu: int | str | None = None) -> np.ndarray:
    """The image of a FITS file as B x H x W floats (one band, or a cube of bands first; leading axes of
    length 1 dropped), rows turned to run top-down as ds9 shows them (FITS stores them bottom-up).
    Gzip- and tile-compressed files are read too. The size is checked on the header, before the data."""
    from astropy.io import fits  # noqa: PLC0415  (only where FITS files are read)

    try:
        with fits.open(path, memmap=False) as hdus:
            chosen = _fits_hdu(hdus, hdu, path)
            shape = tuple(int(n) for n in chosen.shape)
            while len(shape) > 3 and shape[0] == 1:
                shape = shape[1:]
            if len(shape) not in (2, 3):
                raise ImageProblem("unsupported_image", f"{path}: the image has shape {shape}, not H x W or B x H x W")
            if shape[-1] * shape[-2] > max_pixels:
                raise _too_large(path, int(max_pixels), f"{shape[-1]}x{shape[-2]} pixels")
            data = np.asarray(chosen.data, dtype=np.float64).reshape(shape)
    except ImageProblem:
        raise
    except (OSError, ValueError, TypeError, IndexError, KeyError, EOFError) as error:
        raise ImageProblem("unreadable_image", f"{path}: {error}") from None
    bands = data if data.ndim == 3 else data[None]
    return np.ascontiguousarray(np.flip(bands, axis=1))


def band_files(path: str, max_pixels: float, decoding: Decoding) -> np.ndarray:
    """The bands of a per-band image (``{band}`` in ``path``), each a 2-D FITS file, as B x H x W in the
    order of ``image.bands``; a missing band is a missing image, bands of other sizes a problem."""
    planes: list[np.ndarray] = []
    for band in decoding.bands:
        file = path.replace(BAND, band)
        _checked_file(file)
        if not is_fits(file):
            raise ImageProblem("unsupported_image", f"{file}: the files of image.bands must be FITS images")
        plane = fits_bands(file, max_pixels, decoding.hdu)
        if len(plane) != 1:
            raise ImageProblem("unsupported_image", f"{file} holds {len(plane)} planes, not one band")
        if planes and plane.shape != planes[0].shape:
            raise ImageProblem(
                "unsupported_image",
                f"{file} is {plane.shape[2]}x{plane.shape[1]}, but band {decoding.bands[0]!r} is "
                f"{planes[0].shape[2]}x{planes[0].shape[1]}: the bands of an image must be aligned cutouts",
            )
        planes.append(plane)
    return np.concatenate(planes)


def fits_image(path: str | os.PathLike, max_pixels: float, decoding: Decoding | None) -> tuple[np.ndarray, int]:
    """A FITS image as H x W x C uint8 and the number of non-finite pixels filled (``fill_non_finite``):
    its bands (a cube, bands first, or one file per band) stretched together so that sources keep
    their colours; with C = 3, one band is shown as gray. A band with no finite value would pack a
    channel that looks like data: a problem instead."""
    channels = 3 if decoding is None else decoding.channels
    if decoding is not None and decoding.bands and BAND in str(path):
        bands = band_files(str(path), max_pixels, decoding)
    else:
        bands = fits_bands(path, max_pixels, None if decoding is None else decoding.hdu)
    if len(bands) != channels and not (len(bands) == 1 and channels == 3):
        raise ImageProblem(
            "unsupported_image",
            f"{path} holds {len(bands)} band{'s' * (len(bands) > 1)}, but image.channels is {channels}: "
            "every image must have the model's number of input planes",
        )
    for k, band in enumerate(bands):
        if not np.isfinite(band).any():
            raise ImageProblem("unreadable_image", f"{path}: band {k + 1} of {len(bands)} holds no finite value")
    stretched = stretch_to_uint8(bands, decoding)
    count = int(bands.size - np.isfinite(bands).sum())
    return np.ascontiguousarray(np.repeat(stretched, channels // len(bands), axis=0).transpose(1, 2, 0)), count


def _to_array(image: Image.Image, decoding: Decoding | None) -> tuple[np.ndarray, int]:
    """8-bit images (grayscale, palette, alpha, CMYK...) become RGB (or gray, for ``image.channels``
    1) as Pillow converts them; deeper ones (``DEEP_MODES``) are stretched per image by
    ``stretch_to_uint8``, their non-finite pixels filled first (the count is returned). Other
    numbers of channels are FITS's alone."""
    channels = 3 if decoding is None else decoding.channels
    if channels not in (1, 3):
        raise ImageProblem(
            "unsupported_image",
            f"a {image.format} image is gray or RGB, but image.channels is {channels}: give FITS files "
            "(a cube of bands, or one file per band) for other numbers of bands",
        )
    if image.mode in DEEP_MODES:
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).any():
            raise ImageProblem("unreadable_image", "no pixel holds a finite value")
        gray = stretch_to_uint8(values, decoding)
        return np.repeat(gray[..., None], channels, axis=2), int(values.size - np.isfinite(values).sum())
    if image.mode == "P":
        image = image.convert("RGBA")
    if channels == 1:
        return np.asarray(image.convert("L"), dtype=np.uint8)[..., None], 0
    return np.asarray(image.convert("RGB"), dtype=np.uint8), 0


def shown_rgb(pixels: np.ndarray) -> np.ndarray:
    """Images (... x H x W x C uint8) as RGB to look at: three bands as they are (red, green, blue),
    one as gray, two as (first, their mean, second), more as the first, middle and last band. The
    model sees every band; only figures use this."""
    channels = pixels.shape[-1]
    if channels == 3:
        return pixels
    if channels == 1:
        return np.repeat(pixels, 3, axis=-1)
    if channels == 2:
        mean = ((pixels[..., 0].astype(np.uint16) + pixels[..., 1]) // 2).astype(np.uint8)
        return np.stack([pixels[..., 0], mean, pixels[..., 1]], axis=-1)
    return np.ascontiguousarray(pixels[..., [0, channels // 2, channels - 1]])


def _file_problem(path: str | os.PathLike, error: OSError) -> ImageProblem:
    """The integrity problem for a path that cannot be opened (no file, a name too long, a link loop...)."""
    if isinstance(error, FileNotFoundError):
        return ImageProblem("missing_image", f"{path} does not exist")
    return ImageProblem("unreadable_image", f"{path}: {error.strerror or error}")


_LIMIT_LOCK = threading.Lock()
_ACTIVE_LIMITS: list[float] = []  # the max_pixels of every read in progress (inf: a header read)
_SAVED_LIMIT: list[int | None] = []  # Image.MAX_IMAGE_PIXELS as it was before the first of them


@contextmanager
def _pillow_limit(max_pixels: float) -> Iterator[None]:
    """Pillow's own decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``, about 89 Mpx) set to
    ``image.max_pixels`` while an image is read, and restored after the last concurrent read.

    Without this an image below ``image.max_pixels`` but above Pillow's limit is refused by
    Pillow (a warning between one and two times the limit, an error above), and raising
    ``image.max_pixels`` has no effect. Reads in threads share the global, so it is the largest
    limit of the reads in progress: each read checks its own ``max_pixels`` on the header, and
    Pillow's checks on frame and tile extents during decoding stay in force at that level.
    """
    with _LIMIT_LOCK:
        if not _ACTIVE_LIMITS:
            _SAVED_LIMIT[:] = [Image.MAX_IMAGE_PIXELS]
        _ACTIVE_LIMITS.append(max_pixels)
        largest = max(_ACTIVE_LIMITS)
        Image.MAX_IMAGE_PIXELS = None if math.isinf(largest) else int(largest)
    try:
        yield
    finally:
        with _LIMIT_LOCK:
            _ACTIVE_LIMITS.remove(max_pixels)
            if _ACTIVE_LIMITS:
                largest = max(_ACTIVE_LIMITS)
                Image.MAX_IMAGE_PIXELS = None if math.isinf(largest) else int(largest)
            else:
                Image.MAX_IMAGE_PIXELS = _SAVED_LIMIT.pop()


@contextmanager
def _open_image(path: str | os.PathLike, max_pixels: float) -> Iterator[Image.Image]:
    """``Image.open`` on an open file, under ``_pillow_limit``.

    Through a file rather than a path: Pillow memory-maps an uncompressed 8- or 16-bit
    file opened by path, and for a TIFF with an EXIF orientation of 5 to 8 it then maps
    the stored rows with the turned size (scrambled pixels); a file changed while mapped
    would also end the process with SIGBUS rather than raise.
    """
    with _pillow_limit(max_pixels), open(path, "rb") as handle, Image.open(handle) as image:
        yield image


def _too_large(path: str | os.PathLike, max_pixels: int, detail: str) -> ImageProblem:
    return ImageProblem("image_too_large", f"{path} is {detail}, above image.max_pixels={max_pixels}")


def _orientation(image: Image.Image, decoded: bool) -> int:
    """The image's EXIF orientation: 1 when it has none, or EXIF that cannot be parsed (a viewer
    then shows the stored pixels too).

    Pillow's TIFF reader already reports the turned size and turns the pixels itself, so a
    TIFF counts as 1 here. Before decoding, a PNG's eXIf chunk is seen only when it precedes the
    pixels (where Pillow and most writers place it): Pillow would decode the file to look further.
    """
    if image.format == "TIFF" or (not decoded and image.format == "PNG" and "exif" not in image.info):
        return 1
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        return orientation if isinstance(orientation, int) and orientation in DISPLAYED else 1
    except (SyntaxError, ValueError, TypeError, KeyError, IndexError, OSError, struct.error):
        return 1


def _checked_file(path: str | os.PathLike) -> None:
    """A regular, non-empty file, or ImageProblem."""
    try:
        info = os.stat(path)
    except OSError as error:
        raise _file_problem(path, error) from None
    if not stat.S_ISREG(info.st_mode):  # a folder, a FIFO or a device would block or never end
        raise ImageProblem("unreadable_image", f"{path} is not a regular file")
    if info.st_size == 0:
        raise ImageProblem("unreadable_image", f"{path} is an empty file")


def _decode(path: str | os.PathLike, max_pixels: int, convert: Callable[[Image.Image], T]) -> T:
    """Decode a checked file (``_checked_file``) fully as it is displayed and ``convert`` the image,
    or raise ImageProblem.

    ``max_pixels`` is checked on the header before anything else, and is the only size limit
    (``_pillow_limit``): a guard against decompression bombs and against pointing the catalog
    at full survey frames. An image of several frames is refused (``FIRST_FRAME_FORMATS``
    aside). The EXIF orientation is applied, so pixel positions are those a viewer shows.
    """
    try:
        with _open_image(path, max_pixels) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise _too_large(path, max_pixels, f"{width}x{height} pixels")
            frames = getattr(image, "n_frames", 1)
            if frames > 1 and image.format not in FIRST_FRAME_FORMATS:
                raise ImageProblem(
                    "multi_frame",
                    f"{path} is a {image.format} of {frames} frames (an animation or several pages); "
                    "save the one frame to use as an image of its own",
                )
            image.load()
            turn = DISPLAYED.get(_orientation(image, decoded=True))
            return convert(image if turn is None else image.transpose(turn))  # as displayed
    except ImageProblem as problem:
        if problem.detail.startswith(str(path)):
            raise
        raise ImageProblem(problem.problem, f"{path}: {problem.detail}") from None
    except Image.DecompressionBombError as error:  # Pillow's own check, at image.max_pixels (_pillow_limit)
        found = re.search(r"\((\d+) pixels\)", str(error))
        raise _too_large(path, max_pixels, f"{found.group(1)} pixels" if found else str(error)) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageProblem("unreadable_image", f"{path}: {error}") from None


def decode_image(path: str | os.PathLike, max_pixels: int, decoding: Decoding | None = None) -> tuple[np.ndarray, int]:
    """Decode an image fully, as displayed, to an H x W x C uint8 array (C: ``image.channels``), with the
    number of non-finite pixels that were filled (``fill_non_finite``), or raise ImageProblem. FITS
    files are read by astropy (``fits_image``), every other format by Pillow; ``decoding`` scales the
    deep ones."""
    if decoding is not None and decoding.bands and BAND in str(path):
        return fits_image(path, max_pixels, decoding)
    _checked_file(path)
    if is_fits(path):
        return fits_image(path, max_pixels, decoding)
    return _decode(path, max_pixels, lambda image: _to_array(image, decoding))


def load_image(path: str | os.PathLike, max_pixels: int, decoding: Decoding | None = None) -> np.ndarray:
    """Decode an image fully, as displayed, to an H x W x C uint8 array, or raise ImageProblem."""
    return decode_image(path, max_pixels, decoding)[0]


def _to_mask(image: Image.Image) -> np.ndarray:
    if image.mode in DEEP_MODES:
        values = np.asarray(image)
        return np.isfinite(values) & (values != 0)
    if image.mode in ("1", "L"):  # one 8-bit channel: the common mask, without an RGB copy three times its size
        return np.asarray(image) != 0
    return cast(np.ndarray, np.asarray(image.convert("RGB")).any(axis=2))  # an array: axis=2 of H x W x 3


def load_mask(path: str | os.PathLike, max_pixels: int) -> np.ndarray:
    """A mask file as an H x W boolean array: non-zero is the object, in the file's own values.

    Read as displayed (its EXIF orientation applied), like the image it was drawn on.
    Not through ``load_image``'s stretch, which would turn a 16-bit or float mask (a label map
    of 0 and 1, a segmentation map of object numbers) into a different one.
    """
    _checked_file(path)
    if is_fits(path):
        bands = fits_bands(path, max_pixels)
        return cast(np.ndarray, (np.isfinite(bands) & (bands != 0)).any(axis=0))
    return _decode(path, max_pixels, _to_mask)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of the image as displayed, from the file header, without decoding the pixels
    (an EXIF orientation of 5 to 8 exchanges them; see ``_orientation``)."""
    try:
        with _open_image(path, math.inf) as image:  # a header read decodes nothing: no limit
            width, height = image.size
            return (
                (height, width) if _orientation(image, decoded=False) in TRANSPOSING_ORIENTATIONS else (width, height)
            )
    except OSError as error:
        if isinstance(error, FileNotFoundError) or error.errno is not None:
            raise _file_problem(path, error) from None
        raise ImageProblem("unreadable_image", f"{path}: {error}") from None
    except (SyntaxError, ValueError) as error:
        raise ImageProblem("unreadable_image", f"{path}: {error}") from None


def crop_start(extent: int, size: int) -> int:
    """Where the centre crop of one axis starts in the original image (negative: padding before it)."""
    return (extent - size) // 2 if extent >= size else -((size - extent) // 2)


def crop_window(height: int, width: int, size: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """The centre crop/pad of an image as (rows, columns) slices of the original image and the
    matching slices of the size x size result; outside the latter the result is padding."""
    src, dst = [], []
    for extent in (height, width):
        start = crop_start(extent, size)
        if extent >= size:
            src.append(slice(start, start + size))
            dst.append(slice(0, size))
        else:  # padding; an odd difference of one pads after the image only
            src.append(slice(0, extent))
            dst.append(slice(-start, -start + extent))
    return (src[0], src[1]), (dst[0], dst[1])


def center_crop_pad(image: np.ndarray, size: int) -> np.ndarray:
    """Centre crop (or zero-pad) an H x W (x C) array to size x size, like the seed's CropPad."""
    out = np.zeros((size, size) + image.shape[2:], dtype=image.dtype)
    src, dst = crop_window(image.shape[0], image.shape[1], size)
    out[dst] = image[src]
    return out


def image_area(height: int, width: int, size: int) -> np.ndarray:
    """Boolean size x size mask of the pixels that come from the image, not from padding."""
    area = np.zeros((size, size), dtype=bool)
    area[crop_window(height, width, size)[1]] = True
    return area


def nearly_constant(image: np.ndarray, levels: int = 2) -> bool:
    """Whether the central 99% of an 8-bit image's values spans at most ``levels`` grey levels:
    a blank, saturated or blackened image that the model cannot learn from."""
    lo, hi = np.percentile(image, STRETCH_PERCENTILES)
    return bool(hi - lo <= levels)


def open_packed(path: str | os.PathLike) -> np.ndarray:
    """Memory-map the packed N x S x S x C uint8 array written by pack_images (C: the bands).

    A damaged file (a truncated copy, a half-synced shared filesystem) stops the job
    with its name instead of feeding garbage pixels to the model.
    """
    advice = "restore it, or delete it to pack it again"
    with open(path, "rb") as handle:
        if handle.read(6) != b"\x93NUMPY":
            raise ValueError(f"{path} is not a packed image array (no .npy header); {advice}")
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"{path} is not a packed image array ({error}); {advice}") from None
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1] != array.shape[2]:
        raise ValueError(f"{path} holds a {array.dtype} array of shape {array.shape}, not N x S x S x C uint8 images")
    return array


@contextmanager
def uint8_writer(
    path: str | os.PathLike, shape: tuple[int, ...], unit: str = "rows"
) -> Iterator[Callable[[np.ndarray], None]]:
    """Write a uint8 .npy array of ``shape`` block by block along its first axis, with plain file writes.

    Writing through a memory map would leave every page of the file resident in the
    job (a 100k-image array is 1.2 GB at 64 px); written with ``write`` the pages
    belong to the kernel's cache instead. The file must receive exactly ``shape[0]``
    rows (``unit`` names them in the error).
    """
    written = 0
    with open(path, "wb") as handle:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(handle, header)

        def write(block: np.ndarray) -> None:
            nonlocal written
            if block.dtype != np.uint8 or block.shape[1:] != shape[1:] or written + len(block) > shape[0]:
                raise ValueError(f"cannot append a {block.dtype} block of shape {block.shape} to {shape} in {path}")
            handle.write(np.ascontiguousarray(block).data)
            written += len(block)

        yield write
    if written != shape[0]:
        raise ValueError(f"{path} received {written} of its {shape[0]} {unit}")


def packed_writer(
    path: str | os.PathLike, rows: int, size: int, channels: int
) -> AbstractContextManager[Callable[[np.ndarray], None]]:
    """``uint8_writer`` of the packed N x S x S x C images."""
    return uint8_writer(path, (rows, size, size, channels), "images")


def read_rows(images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows of the packed array, in the order of ``rows``.

    From a memory map, each contiguous run of rows is read with one plain ``pread``
    instead of through the mapping, which would leave every page it touched resident:
    a pass over a 100k-image array (or an epoch of random batches) then keeps a
    resident size of one batch, not of the whole file.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if not isinstance(images, np.memmap) or not len(rows):
        return np.asarray(images[rows])
    block = np.empty((len(rows), *images.shape[1:]), dtype=images.dtype)
    row_bytes = block[0].nbytes
    out = block.data.cast("B")  # block.data is memoryview(block)
    starts = np.flatnonzero(np.diff(rows, prepend=rows[0] - 2) != 1)  # where a contiguous run begins
    ends = np.append(starts[1:], len(rows))
    assert images.filename is not None  # a memmap of a file (open_packed) knows its file
    with open(images.filename, "rb", buffering=0) as handle:
        for start, end in zip(starts.tolist(), ends.tolist()):
            offset = images.offset + int(rows[start]) * row_bytes
            view = out[start * row_bytes : end * row_bytes]
            while len(view):
                done = os.preadv(handle.fileno(), [view], offset)
                if done == 0:
                    raise EOFError(f"{images.filename} ends before row {rows[start]}")
                view, offset = view[done:], offset + done
    return block
