"""The one object-region function: a boolean mask of the centred object for each image.

``saliency.object.method`` chooses how the region is found:

- ``threshold``: segment the cutout itself (smoothed brightness above the
  sigma-clipped sky of the border, the connected component at or nearest the
  centre that holds a significant detection, holes filled). Works on any centred cutout without extra catalog columns.
- ``segments``: the same smoothed, sky-subtracted image and the same threshold,
  split into sources by photutils (``detect_sources`` then ``deblend_sources``:
  multi-thresholding and watershed), so that a star touching the galaxy or the
  crowded stars of a cluster become segments of their own. The object is the
  segment at the centre, or the significant one nearest to it; every other
  segment is a neighbour (``regions_and_neighbours``).
- ``masks``: one mask image per id (non-zero = object) of the original image's size,
  cropped/padded like the image; a mask of another size is a ``mask_size_mismatch``.
- ``circle``: a centred circle of radius ``radius_column`` (arcsec) / ``pixel_scale``.
- ``ellipse``: a catalog ellipse in the pixels of the original image file
  (``x`` column, ``y`` row, 0-based from the top-left pixel; semi-axes ``a``,
  ``b``; ``theta`` in degrees counter-clockwise from the +x axis as displayed).

Masks come back at the packed image size, and never include the zero padding
that ``image.size`` adds around an image smaller than it: the threshold method
measures the sky on the border of the image's own pixels, and every region is
limited to them. An image whose region cannot be built (missing mask file, missing
or invalid catalog value) is returned as a problem row and an empty mask, so the
caller reports and skips it.
"""

import warnings
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
from astropy.stats import sigma_clipped_stats
from scipy import ndimage

from saliency_audit.data.image_io import ImageProblem, center_crop_pad, crop_start, crop_window, image_area, load_mask

METHODS = ("threshold", "segments", "masks", "circle", "ellipse")
SMOOTH_SIGMA_PX = 1.0  # Gaussian smoothing before thresholding: suppresses single noisy pixels
SKY_BORDER_PX = 6  # width of the frame on which the sky level and noise are measured
DETECT_NSIGMA = 5.0  # a component counts as an object only if some pixel rises this far above the sky
MAX_CENTRE_DISTANCE = 0.25  # a component further than this fraction of the size from the centre is not the object
DEBLEND_LEVELS = 32  # photutils' default n_levels: thresholds per source between its faintest and brightest pixel

# One image slice at a time: no connectivity across the batch axis.
_PLANE_8 = np.zeros((3, 3, 3), dtype=bool)
_PLANE_8[1] = True

Problem = tuple[int, str, str]  # (position in the batch, problem code, detail)


def threshold_regions(images: np.ndarray, nsigma: float, sizes: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """Segment the centred object of each B x S x S x 3 uint8 cutout (vectorised over the batch),
    at ``nsigma`` (saliency.object.nsigma) above the sky in units of the smoothed sky's clipped std.

    ``sizes`` are the (width, height) of the original images: each is segmented within its
    own pixels (padding neither sets the sky level nor joins the region). Without them
    the whole cutout is the image.
    """
    masks = np.zeros(images.shape[:3], dtype=bool)
    for (y0, y1, x0, x1), index in _windows(images.shape, sizes).items():
        masks[index, y0:y1, x0:x1] = _threshold(images[index, y0:y1, x0:x1], nsigma)
    return masks


def _windows(shape: tuple[int, ...], sizes: Sequence[tuple[int, int]] | None) -> dict[tuple[int, ...], np.ndarray]:
    """The images of a B x S x S batch grouped by the window (y0, y1, x0, x1) of their own pixels
    (usually one window: every image as large as the cutout)."""
    batch, size = shape[0], shape[1]
    if sizes is None:
        return {(0, size, 0, size): np.arange(batch)}
    windows: dict[tuple[int, ...], list[int]] = {}
    for position, (width, height) in enumerate(sizes):
        rows, columns = crop_window(int(height), int(width), size)[1]
        windows.setdefault((rows.start, rows.stop, columns.start, columns.stop), []).append(position)
    return {window: np.asarray(members) for window, members in windows.items()}


def smoothed_gray(images: np.ndarray) -> np.ndarray:
    """The channel mean of B x H x W x 3 images, smoothed by a Gaussian of SMOOTH_SIGMA_PX (float32)."""
    gray = np.asarray(images, dtype=np.float32).mean(axis=3)
    return ndimage.gaussian_filter(gray, sigma=(0, SMOOTH_SIGMA_PX, SMOOTH_SIGMA_PX))


def sky_and_noise(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sky level and noise of each smoothed B x H x W image (``smoothed_gray``): the 3-sigma-clipped
    median and std of its SKY_BORDER_PX border, which a centred object rarely fills. Both methods
    that segment the cutout itself (threshold, segments) measure the sky here.

    The noise is that of the smoothed image (a floor of 1e-3 for a constant border). In a crowded
    field the border holds other sources, and the noise is their confusion rather than the pixels'.
    """
    height, width = gray.shape[1:3]
    border = np.ones((height, width), dtype=bool)
    border[SKY_BORDER_PX:-SKY_BORDER_PX, SKY_BORDER_PX:-SKY_BORDER_PX] = False
    _, sky, noise = sigma_clipped_stats(gray[:, border], sigma=3.0, maxiters=5, axis=1)
    return np.asarray(sky), np.maximum(np.asarray(noise), 1e-3)


def _threshold(images: np.ndarray, nsigma: float) -> np.ndarray:
    gray = smoothed_gray(images)
    sky, noise = (value[:, None, None] for value in sky_and_noise(gray))
    above = gray > sky + nsigma * noise
    # grown down to the faint isophote, but only from a significant detection (no noise islands)
    detected = gray > sky + max(nsigma, DETECT_NSIGMA) * noise
    masks, _ = _central_component(above, detected)
    return ndimage.binary_fill_holes(masks, structure=_PLANE_8)


def segment_regions(
    images: np.ndarray,
    nsigma: float,
    npixels: int,
    contrast: float,
    sizes: Sequence[tuple[int, int]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The object segment and the other segments of each B x S x S x 3 uint8 cutout: two B x S x S
    boolean masks ``(objects, neighbours)``, disjoint, both within each image's own pixels.

    Each image (within its own pixels, as ``threshold_regions``) is smoothed, its sky
    (``sky_and_noise``) subtracted, and photutils' ``detect_sources`` finds the sources:
    connected groups of at least ``npixels`` pixels above ``nsigma`` times the noise
    (saliency.object.npixels, .nsigma). ``deblend_sources`` splits a source wherever
    it holds several peaks, each with at least ``contrast`` of its flux
    (saliency.object.contrast; DEBLEND_LEVELS exponentially spaced thresholds, then
    a watershed). The object is the segment that covers the image's centre (the
    brightest of the 1 or 4 central pixels that lies in a segment); when none does,
    the segment nearest the centre, within MAX_CENTRE_DISTANCE of the size, among
    those that peak DETECT_NSIGMA times the noise above the sky (so that a patch of
    noise is no object); when none is, the image has no object (an empty mask). The
    object's holes are filled, except where another segment lies. Only the sources
    that may hold the object are deblended: a source away from it is one neighbour
    however many stars it holds, which leaves the neighbours' union the same.
    """
    objects = np.zeros(images.shape[:3], dtype=bool)
    neighbours = np.zeros(images.shape[:3], dtype=bool)
    for (y0, y1, x0, x1), index in _windows(images.shape, sizes).items():
        gray = smoothed_gray(images[index, y0:y1, x0:x1])
        sky, noise = sky_and_noise(gray)
        for k, position in enumerate(index):
            found, others = _segments(gray[k] - sky[k], float(noise[k]), nsigma, npixels, contrast)
            objects[position, y0:y1, x0:x1] = found
            neighbours[position, y0:y1, x0:x1] = others
    return objects, neighbours


def regions_and_neighbours(
    spec: dict[str, Any],
    ids: Sequence[str],
    images: np.ndarray,
    catalog: pd.DataFrame,
    sizes: Sequence[tuple[int, int]] | None,
    max_pixels: int,
) -> tuple[np.ndarray, np.ndarray, list[Problem]]:
    """``object_regions`` and the other sources of each image: B x S x S object masks, B x S x S
    neighbour masks and the problems.

    The neighbours are the segments other than the object's of ``segment_regions``,
    from the same segmentation, for ``method: segments``: disjoint from the object,
    the two together hold every pixel of every segment (the object also its filled
    holes), never a pixel of the padding; a star touching the galaxy is a neighbour.
    The other methods know no sources besides their region: all False.
    """
    if spec["method"] == "segments":
        objects, neighbours = segment_regions(images, spec["nsigma"], spec["npixels"], spec["contrast"], sizes)
        return objects, neighbours, []
    objects, problems = object_regions(spec, ids, images, catalog, sizes, max_pixels)
    return objects, np.zeros_like(objects), problems


@cache
def _centre_distance(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    distance = np.hypot(yy - (height - 1) / 2, xx - (width - 1) / 2)
    distance.flags.writeable = False
    return distance


def _segments(
    data: np.ndarray, noise: float, nsigma: float, npixels: int, contrast: float
) -> tuple[np.ndarray, np.ndarray]:
    """Object and neighbour masks of one sky-subtracted, smoothed H x W image (``segment_regions``)."""
    # imported here: photutils.segmentation takes seconds to import, and only this method needs it
    from photutils.segmentation import deblend_sources, detect_sources
    from photutils.utils.exceptions import NoDetectionsWarning

    empty = np.zeros(data.shape, dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)  # pure sky: no source, no object
        sources = detect_sources(data, nsigma * noise, n_pixels=npixels)
    if sources is None:
        return empty, empty
    height, width = data.shape
    distance = _centre_distance(height, width)
    centre = distance <= distance.min() + 1e-9  # the 1 (odd size) or 4 (even size) central pixels
    significant = max(nsigma, DETECT_NSIGMA) * noise
    labels = sources.data
    index = np.arange(1, int(labels.max()) + 1)
    near = np.asarray(ndimage.minimum(distance, labels, index)) <= MAX_CENTRE_DISTANCE * min(height, width)
    peaks = np.asarray(ndimage.maximum(data, labels, index))
    covering = np.unique(labels[centre & (labels > 0)])
    candidates = covering if covering.size else index[near & (peaks > significant)]
    if candidates.size == 0:
        return empty, labels > 0
    segments = deblend_sources(data, sources, npixels, labels=candidates, n_levels=DEBLEND_LEVELS,
                               contrast=contrast, progress_bar=False).data  # fmt: skip
    in_centre = centre & (segments > 0)
    if in_centre.any():
        chosen = int(segments[in_centre][np.argmax(data[in_centre])])
    else:
        index = np.arange(1, int(segments.max()) + 1)
        nearest = np.asarray(ndimage.minimum(distance, segments, index))
        peaks = np.asarray(ndimage.maximum(data, segments, index))
        nearest[~(peaks > significant) | (nearest > MAX_CENTRE_DISTANCE * min(height, width))] = np.inf
        if not np.isfinite(nearest.min()):
            return empty, segments > 0
        chosen = int(index[np.argmin(nearest)])
    others = (segments > 0) & (segments != chosen)
    found = ndimage.binary_fill_holes(segments == chosen) & ~others
    return found, others


def _central_component(binary: np.ndarray, detected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image of a B x H x W stack, the connected component closest to the centre among those
    holding a ``detected`` pixel, and whether one exists."""
    batch, height, width = binary.shape
    labels, n_components = ndimage.label(binary, structure=_PLANE_8)
    if n_components == 0:
        return np.zeros_like(binary), np.zeros(batch, dtype=bool)
    # per component, from its pixels only (labels run 1..n over the whole batch)
    pixels = np.flatnonzero(labels)
    component = labels.ravel()[pixels]
    yy, xx = np.divmod(pixels % (height * width), width)
    nearest = np.full(n_components + 1, np.inf)
    np.minimum.at(nearest, component, np.hypot(yy - (height - 1) / 2, xx - (width - 1) / 2))
    owner = np.zeros(n_components + 1, dtype=np.int64)
    owner[component] = pixels // (height * width)
    significant = np.zeros(n_components + 1, dtype=bool)
    significant[component[detected.ravel()[pixels]]] = True
    close = significant & (nearest <= MAX_CENTRE_DISTANCE * min(height, width))
    close[0] = False  # the background
    index = np.flatnonzero(close)
    candidates = pd.DataFrame({"label": index, "image": owner[index], "distance": nearest[index]})
    chosen = candidates.sort_values(["image", "distance", "label"]).drop_duplicates("image")
    found = np.zeros(batch, dtype=bool)
    found[chosen["image"].to_numpy()] = True
    keep = np.zeros(n_components + 1, dtype=bool)
    keep[chosen["label"].to_numpy()] = True
    return keep[labels], found


def disk_mask(size: int, x: float, y: float, a: float, b: float, theta_deg: float) -> np.ndarray:
    """Pixels of a size x size image whose centres fall inside the ellipse (a circle when a == b)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    theta = np.deg2rad(theta_deg)
    dx, dy = xx - x, -(yy - y)  # y grows downwards in the array, upwards on screen
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _values(catalog: pd.DataFrame, ids: Sequence[str], columns: dict[str, str], key: str) -> tuple[dict, list]:
    """Catalog values for each id, and a problem for each id whose value is missing or not positive/finite."""
    problems: list[Problem] = []
    missing = [c for c in columns.values() if c not in catalog.columns]
    if missing:
        detail = f"column {missing[0]!r} (saliency.object.{key}) is not in the catalog"
        return {}, [(i, "missing_region_column", detail) for i in range(len(ids))]
    rows = catalog.reindex(list(ids))[list(columns.values())].apply(pd.to_numeric, errors="coerce")
    values = {name: rows[column].to_numpy(np.float64) for name, column in columns.items()}
    for position in range(len(ids)):
        bad = [name for name, v in values.items() if not np.isfinite(v[position])]
        if bad:
            problems.append((position, "missing_region_value", f"{columns[bad[0]]} is empty or not a number"))
        elif any(values[name][position] <= 0 for name in ("radius", "a", "b") if name in values):
            problems.append((position, "invalid_region_value", "the region's radius or semi-axis is not positive"))
    return values, problems


def object_regions(
    spec: dict[str, Any],
    ids: Sequence[str],
    images: np.ndarray,
    catalog: pd.DataFrame,
    sizes: Sequence[tuple[int, int]] | None,
    max_pixels: int,
) -> tuple[np.ndarray, list[Problem]]:
    """Boolean B x S x S object masks for a batch, and the problems of the images left without one.

    ``catalog`` is indexed by id (catalog columns for circle/ellipse); ``sizes`` are the
    (width, height) of the original image files (the clean catalog's ``image_width`` and
    ``image_height``): ellipse coordinates and mask files refer to them, and they tell the
    image's pixels from padding. Without them every image is taken to fill the cutout.
    """
    method = spec["method"]
    batch, size = images.shape[0], images.shape[1]
    sizes = [(size, size)] * batch if sizes is None else [(int(w), int(h)) for w, h in sizes]
    areas = np.stack([image_area(h, w, size) for w, h in sizes]) if batch else np.zeros((0, size, size), bool)
    problems: list[Problem] = []
    if method == "threshold":
        return threshold_regions(images, spec["nsigma"], sizes), problems
    if method == "segments":
        return segment_regions(images, spec["nsigma"], spec["npixels"], spec["contrast"], sizes)[0], problems
    masks = np.zeros((batch, size, size), dtype=bool)
    if method == "masks":
        for position, image_id in enumerate(ids):
            try:
                mask = load_mask(spec["masks"].format(id=image_id), max_pixels)
            except ImageProblem as problem:
                problems.append((position, problem.problem.replace("image", "mask"), problem.detail))
                continue
            width, height = sizes[position]
            if mask.shape != (height, width):
                problems.append((position, "mask_size_mismatch", f"the mask is {mask.shape[1]}x{mask.shape[0]}, "
                                 f"its image {width}x{height}"))  # fmt: skip
                continue
            masks[position] = center_crop_pad(mask, size)
        return masks & areas, problems
    if method == "circle":
        values, problems = _values(catalog, ids, {"radius": spec["radius_column"]}, "radius_column")
        centre = (size - 1) / 2
        for position in _usable(batch, problems):
            radius = values["radius"][position] / spec["pixel_scale"]
            masks[position] = disk_mask(size, centre, centre, radius, radius, 0.0)
        return masks & areas, problems
    if method == "ellipse":
        values, problems = _values(catalog, ids, spec["columns"], "columns")
        for position in _usable(batch, problems):
            width, height = sizes[position]
            x = values["x"][position] - crop_start(width, size)
            y = values["y"][position] - crop_start(height, size)
            masks[position] = disk_mask(
                size, x, y, values["a"][position], values["b"][position], values["theta"][position]
            )
        return masks & areas, sorted(problems)
    raise ValueError(f"saliency.object.method must be one of {METHODS}, got {method!r}")


def image_sizes(catalog: pd.DataFrame, ids: Sequence[str]) -> list[tuple[int, int]]:
    """(width, height) of the original image of each id, from the clean catalog (indexed by id)."""
    rows = catalog.loc[list(ids), ["image_width", "image_height"]].to_numpy(dtype=np.int64)
    return [(int(w), int(h)) for w, h in rows]


def _usable(batch: int, problems: list[Problem]) -> list[int]:
    bad = {position for position, _, _ in problems}
    return [position for position in range(batch) if position not in bad]
