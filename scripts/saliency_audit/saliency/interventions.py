"""Intervention probes: does a prediction need its background, or only its object?

A Grad-CAM map says where the evidence is; only removing a part of the image
says whether the prediction needs it. Each image with an object region is shown
to the model twice more (after the Backgrounds Challenge, Xiao et al. 2020):

- *object only*: every pixel outside the object's part of the image is
  replaced by a fill;
- *background only*: the object's part is replaced by the fill.

The object's part is its region grown by about one cell of the map, so the
object keeps its own halo, but never into another source: a pixel of the grown
ring belongs to the object only if it is nearer to the object than to any other
source (a component of pixels outside the region, more than ``DETECT_SIGMA``
robust sigma from the sky, whose peak lies away from the region's edge), and
another source's own pixels never do.
Without that rule a star a few pixels off a galaxy would be half kept in the
object-only view, and the probe would under-state how much the prediction needs it.

The fill has to look like the image's own empty background, not like a hole
whose shape tells the model where the object was (Rong et al. 2022, ROAD):

- ``sky`` (default): the image's own background (outside the object's part,
  inside the image's own pixels), after removing its sources, drawn in blocks
  of ``SKY_BLOCK_PX`` px with a generator seeded by the image's id: each block
  of the filled area is copied from a random window of that size whose pixels
  all deviate from the background's per-channel median by at most 3 robust
  sigma in every channel (no star, no neighbour). Drawing blocks rather than
  single pixels keeps the noise's texture: the noise of real cutouts is
  correlated over a few pixels (JPEG's 8 px blocks and subsampled colour, the
  resampling of a mosaic), and a pixel-by-pixel draw makes it white, a texture
  the model never saw, which alone moved boundary predictions of a model
  trained without any shortcut. Where no such window fits, the block is halved,
  down to single pixels. The filled area has the empty background's
  per-channel median, spread and texture, and no source.
- ``mean``: the per-channel mean of those source-free background pixels.
- ``blur``: the image smoothed by a Gaussian of one cell, so only the coarse
  structure of what was there remains.

Removing pixels moves a model's output even where nothing it used was removed:
the fill is new noise, out of the training distribution, and a boundary
prediction can cross over on that alone (ROAD, Rong et al. 2022). Each image
therefore gets a *control* view, one of ``CONTROLS``:

- ``refill`` (default): the same fill applied to the background's source-free
  pixels only (its sky), so every source stays where it is and nothing the
  model could use is removed;
- ``redraw``: a second, independent draw of the object-only view.

The control's *effect* is how far it moves the predicted class's margin (the
margin against the refilled image, or between the two object-only draws).
``background_reliance`` is the share of the margin (its logit minus the best
other logit) lost when the background is replaced, beyond that effect; where the
margin itself is no larger than the effect, the image is ``uncertain``: what the
fill alone does could decide it, and it is never flagged.

``probe_images`` works on the whole batch at once (distances, robust levels, source labels and
the copying of the fill), and only each image's seeded draws run image by image; its views are,
bit for bit, those of the image-by-image functions below (``object_part``, ``sky_mask``,
``fill_region``), which the tests check against the former implementation.
"""

import math
import zlib
from collections.abc import Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from saliency_audit.saliency.vocabulary import STATE_EMPTY_OBJECT, STATE_NO_BACKGROUND, STATE_OK

FILLS = ("sky", "mean", "blur")
CONTROLS = ("refill", "redraw")
SOURCE_SIGMA = 3.0  # background pixels further than this from the median (robust sigma) are not sky
DETECT_SIGMA = 5.0  # pixels this far from the sky, outside the region, may belong to another source
SOURCE_CLEARANCE_PX = 2.0  # ... when their component peaks further than this from the region
MIN_SKY_PIXELS = 16  # fewer clean background pixels than this: draw from every background pixel
SKY_BLOCK_PX = 8  # the sky fill copies windows this wide (a JPEG block), halved where none fits
MIN_WINDOWS = 4  # fewer distinct windows than this would tile the fill with visibly repeated patches
CHUNK_PIXELS = 1 << 20  # probe_images works on this many pixels at a time: temporaries stay a few tens of MB

# ndimage.label's default connectivity (4 neighbours) within each image of a batch, never across images
_PLANE_CROSS = np.zeros((3, 3, 3), dtype=bool)
_PLANE_CROSS[1] = ndimage.generate_binary_structure(2, 1)


def sky_level(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel median and robust sigma (1.4826 MAD, at least half a grey level) of N x 3 pixels."""
    median = np.median(pixels, axis=0)
    return median, np.maximum(1.4826 * np.median(np.abs(pixels - median), axis=0), 0.5)


def _planes(images: np.ndarray) -> np.ndarray:
    """B x H x W x C images as B x C x H x W: numpy's loops over a last axis of 3 are several times
    slower than over whole image planes, so the statistics work on planes."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def _levels(planes: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sky_levels`` of B x C x H x W ``planes``: B x C medians and sigmas (float32).

    For uint8 pixels the order statistics are read from per-channel histograms: the median of
    integers is one of them or the mean of two, and so is the median of their distances to it (in
    half grey levels), so the float32 numbers are exactly ``np.median``'s, without sorting each
    image's pixels twice. Other dtypes go through ``sky_level`` image by image."""
    b, c = planes.shape[:2]
    if planes.dtype != np.uint8:
        levels = [sky_level(plane[:, mask].T.astype(np.float32)) for plane, mask in zip(planes, masks)]
        empty = np.zeros((0, c), np.float32)
        return (np.stack([m for m, _ in levels]), np.stack([s for _, s in levels])) if levels else (empty, empty)
    n = masks.sum(axis=(1, 2))
    image = np.repeat(np.arange(b) * 256, n)  # each selected pixel's histogram, image by image
    counts = np.stack([np.bincount(image + plane[masks], minlength=b * 256).reshape(b, 256)
                       for plane in planes.transpose(1, 0, 2, 3)], axis=1)  # fmt: skip
    low, high = ((n - 1) // 2)[:, None, None], (n // 2)[:, None, None]  # the ranks np.median averages
    below = np.zeros((b, c, 257), np.int64)  # below[v]: pixels under level v
    np.cumsum(counts, axis=2, out=below[..., 1:])
    twice = (below[..., 1:] <= low).sum(axis=2) + (below[..., 1:] <= high).sum(axis=2)  # 2 x median
    start = (np.arange(b * c) * 257).reshape(b, c, 1)

    def within(d: np.ndarray) -> np.ndarray:
        """Pixels within ``d`` (b x c x k) half grey levels of the median m: levels ceil(m - d/2) to floor(m + d/2)."""
        top = np.minimum((twice[..., None] + d) >> 1, 255) + 1
        return np.take(below, start + top) - np.take(below, start + np.maximum((twice[..., None] - d + 1) >> 1, 0))

    # the distances at the two middle ranks (half grey levels, 0 to 510): the smallest d with more pixels
    # within d than the rank, found among steps of 16, then among the 16 values of its step
    steps = within(np.arange(15, 512, 16))
    quadruple_mad = np.zeros_like(twice)
    for rank in (low, high):
        base = 16 * (steps <= rank).sum(axis=2)
        quadruple_mad += base + (within(base[..., None] + np.arange(16)) <= rank).sum(axis=2)
    median, mad = (twice / 2).astype(np.float32), (quadruple_mad / 4).astype(np.float32)
    return median, np.maximum(1.4826 * mad, 0.5)


def sky_levels(images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sky_level`` of the ``masks`` pixels of each of B images (B x H x W x 3): B x 3 medians and
    sigmas, the same float32 numbers, from one pass over the batch."""
    return _levels(_planes(images), masks)


_GREYS = np.arange(256, dtype=np.float32)
Test = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _faint(value: np.ndarray, median: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Within ``DETECT_SIGMA`` of the sky (the negation of ``object_part``'s detection test)."""
    return np.asarray(np.abs(value - median) / sigma <= DETECT_SIGMA)


def _clean(value: np.ndarray, median: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Within ``SOURCE_SIGMA`` of the sky (``sky_mask``'s test)."""
    return np.asarray(np.abs(value - median) <= SOURCE_SIGMA * sigma)


def _every_channel(planes: np.ndarray, median: np.ndarray, sigma: np.ndarray, test: Test) -> np.ndarray:
    """B x H x W: where ``test(value, median, sigma)`` holds for every channel of a pixel (its float32
    value, its image's B x C ``median`` and ``sigma``).

    For uint8 images the test runs once per image and channel on the 256 grey levels. It bounds
    the distance from the median, so it holds on an interval of levels (float32 rounding is
    monotone), and each pixel is compared with the interval's ends: the same answer as testing the
    pixels' float32 values, without float copies of the images."""
    if planes.dtype != np.uint8:
        return np.all(test(planes.astype(np.float32), median[..., None, None], sigma[..., None, None]), axis=1)
    table = test(_GREYS, median[..., None], sigma[..., None])
    some = table.any(axis=2)
    low = np.where(some, table.argmax(axis=2), 1)
    high = np.where(some, 255 - table[..., ::-1].argmax(axis=2), 0)
    if not (table.sum(axis=2) == np.where(some, high - low + 1, 0)).all():
        raise AssertionError("a test on the distance from the median must hold on an interval of levels")
    low, high = low.astype(np.uint8), high.astype(np.uint8)
    every = np.ones((len(planes), *planes.shape[2:]), dtype=bool)
    for channel, plane in enumerate(planes.transpose(1, 0, 2, 3)):
        every &= plane >= low[:, channel, None, None]
        every &= plane <= high[:, channel, None, None]
    return every


def _excess(pixels: np.ndarray, median: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """How far pixels (N x C, or C x H x W with C x 1 x 1 levels) lie from the sky: the largest over the
    channels of ``np.abs(value - median) / sigma``, in float32, as ``object_part`` always measured it."""
    axis = 1 if pixels.ndim == 2 else 0
    return (np.abs(pixels.astype(np.float32) - median) / sigma).max(axis=axis)


def squared_distances(features: np.ndarray, reach: int) -> np.ndarray:
    """Squared Euclidean distance from every pixel to the nearest True pixel of its own image
    (B x H x W, unsigned integers): exact wherever that distance is under ``reach`` + 1 px, at least
    (``reach`` + 1)² elsewhere (also in an image without any True pixel).

    What the probes need of ``ndimage.distance_transform_edt`` (which gives the square roots of the
    same integers): every comparison they make involves a distance within ``reach``. The minimum of
    dx² over the True pixels within ``reach`` of each pixel's row, then of dy² plus that over the rows
    within ``reach``: a few passes over the whole batch (in the smallest integer type that holds
    the sums) instead of a transform, and a Python call, per image."""
    b, h, w = features.shape
    far, rx, ry = reach + 1, min(reach, w - 1), min(reach, h - 1)
    top = far * far + reach * reach
    dtype = np.uint8 if top < 1 << 8 else np.uint16 if top < 1 << 16 else np.uint32
    # rows padded with rx columns that hold nothing: a shift of the flat array never reaches another row's pixels
    initial = np.full((b, h, w + rx), far * far, dtype=dtype)
    initial[..., :w] = np.where(features, dtype(0), dtype(far * far))
    flat, lifted = initial.ravel(), np.empty(initial.size, dtype=dtype)
    rows = flat.copy()
    for dx in range(1, rx + 1):
        np.add(flat, dtype(dx * dx), out=lifted)
        np.minimum(rows[dx:], lifted[:-dx], out=rows[dx:])
        np.minimum(rows[:-dx], lifted[dx:], out=rows[:-dx])
    rows = rows.reshape(initial.shape)
    squared, lifted = rows.copy(), lifted.reshape(initial.shape)
    for dy in range(1, ry + 1):
        np.add(rows, dtype(dy * dy), out=lifted)
        np.minimum(squared[:, dy:], lifted[:, :-dy], out=squared[:, dy:])
        np.minimum(squared[:, :-dy], lifted[:, dy:], out=squared[:, :-dy])
    return squared[..., :w]


def _squared_limit(limit: float) -> int:
    """The largest integer q with sqrt(q) <= ``limit`` (-1 if none): for integers, ``squared <= q`` is
    exactly ``np.sqrt(squared) <= limit``, the test on ``distance_transform_edt``'s float distances."""
    limit = float(limit)
    if not limit >= 0:
        return -1
    q = math.floor(limit * limit)
    while math.sqrt(q + 1) <= limit:
        q += 1
    while q >= 0 and math.sqrt(q) > limit:
        q -= 1
    return q


def _separate_sources(planes: np.ndarray, median: np.ndarray, sigma: np.ndarray, labels: np.ndarray, n: int,
                      clear: np.ndarray) -> np.ndarray:  # fmt: skip
    """The pixels of the labelled components (one labelling of a batch) that are sources of their own:
    those whose brightest pixel, as ``ndimage.maximum_position`` picks it, is ``clear`` of the region.

    Where a component's brightest value is reached both clear of the region and not, which of
    those pixels ``maximum_position`` returns depends on its sort of the whole image: that image
    alone asks it, as ``object_part`` always did (rare: a tie straddling 2 px from the region)."""
    others = np.zeros(labels.shape, dtype=bool)
    if not n:
        return others
    at = np.flatnonzero(labels)
    k, y, x = np.unravel_index(at, labels.shape)
    label, away = labels.ravel()[at], clear.ravel()[at]
    value = _excess(planes[k, :, y, x], median[k], sigma[k])
    peak = np.full(n + 1, -np.inf, dtype=value.dtype)
    np.maximum.at(peak, label, value)
    top = value == peak[label]
    tops, clear_tops = np.bincount(label[top], minlength=n + 1), np.bincount(label[top & away], minlength=n + 1)
    own = clear_tops == tops
    others.ravel()[at[own[label]]] = True
    for image in np.unique(k[np.isin(label, np.flatnonzero((clear_tops > 0) & (clear_tops < tops)))]).tolist():
        excess = _excess(planes[image], median[image][:, None, None], sigma[image][:, None, None])
        components, m = ndimage.label(labels[image] > 0)  # the same components, numbered as object_part's
        peaks = ndimage.maximum_position(excess, components, index=np.arange(1, m + 1))
        others[image] = np.isin(components, np.flatnonzero([clear[image][p] for p in peaks]) + 1)
    return others


def _object_parts(planes: np.ndarray, masks: np.ndarray, areas: np.ndarray, radius: float,
                  neighbours: np.ndarray | None) -> np.ndarray:  # fmt: skip
    """``object_parts`` of B x C x H x W ``planes``."""
    b, h, w = masks.shape
    reach = int(min(math.floor(max(radius, SOURCE_CLEARANCE_PX)), h + w))  # every distance compared is within it
    squared = squared_distances(masks, reach)
    region = masks & areas
    grown = areas & (squared <= min(_squared_limit(radius), (reach + 1) ** 2 - 1))
    background = areas & ~grown
    given = np.zeros_like(masks) if neighbours is None else neighbours & areas & ~masks
    parts = (grown & ~given) | region  # without a radius or a background: the grown region less the neighbours
    rest = np.flatnonzero(background.any(axis=(1, 2))) if radius > 0 else np.zeros(0, dtype=np.int64)
    if not len(rest):
        return parts
    median, sigma = _levels(planes[rest], background[rest])
    bright = ~_every_channel(planes[rest], median, sigma, _faint)  # object_part's excess > DETECT_SIGMA
    labels, n = ndimage.label(areas[rest] & ~masks[rest] & bright, structure=_PLANE_CROSS)
    clear = squared[rest] > _squared_limit(SOURCE_CLEARANCE_PX)
    others = _separate_sources(planes[rest], median, sigma, labels, n, clear) | given[rest]
    parts[rest] = grown[rest] | region[rest]
    crowded = np.flatnonzero(others.any(axis=(1, 2)))
    if len(crowded):
        k = rest[crowded]
        nearer = squared[k] < squared_distances(others[crowded], reach)
        parts[k] = region[k] | (grown[k] & nearer & ~others[crowded])
    return parts


def object_parts(images: np.ndarray, masks: np.ndarray, areas: np.ndarray, radius: float,
                 neighbours: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """``object_part`` of each of B images (B x H x W x 3, masks B x H x W) at once: the same pixels,
    with the distances, robust levels and source labels computed over the whole batch."""
    return _object_parts(_planes(images), masks, areas, radius, neighbours)


def object_part(
    image: np.ndarray, mask: np.ndarray, area: np.ndarray, radius: float, neighbours: np.ndarray | None = None
) -> np.ndarray:
    """The pixels that go with the object: its region, and the ring ``radius`` px around it that is
    nearer to it than to any other source of the image (see the module's docstring). ``neighbours``
    (the other segments of ``saliency.object.method: segments``) are other sources too, also where
    their light is too faint or too close to the region for the detection here."""
    others = None if neighbours is None else neighbours[None]
    return object_parts(image[None], mask[None], area[None], radius, others)[0]


def _sky_masks(planes: np.ndarray, backgrounds: np.ndarray) -> np.ndarray:
    """``sky_masks`` of B x C x H x W ``planes``."""
    median, sigma = _levels(planes, backgrounds)
    clean = backgrounds & _every_channel(planes, median, sigma, _clean)
    few = clean.sum(axis=(1, 2)) < MIN_SKY_PIXELS
    clean[few] = backgrounds[few]
    return clean


def sky_masks(images: np.ndarray, backgrounds: np.ndarray) -> np.ndarray:
    """``sky_mask`` of each of B images at once (B x H x W x 3, backgrounds B x H x W)."""
    return _sky_masks(_planes(images), backgrounds)


def sky_mask(image: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The source-free pixels of one H x W x 3 image's ``background`` (all of it if too few are)."""
    return sky_masks(image[None], background[None])[0]


def sky_windows(sky: np.ndarray, block: int) -> np.ndarray:
    """Top-left corners (K x 2) of the ``block`` x ``block`` windows that lie wholly inside ``sky``."""
    table = np.pad(sky.astype(np.int32).cumsum(axis=0).cumsum(axis=1), ((1, 0), (1, 0)))
    inside = table[block:, block:] - table[:-block, block:] - table[block:, :-block] + table[:-block, :-block]
    return np.argwhere(inside == block * block)


def _last(masks: np.ndarray, axis: int) -> list[int]:
    """Per image, the last row (``axis`` 2) or column (``axis`` 1) that holds a True pixel (0 if none)."""
    lines = np.asarray(masks.any(axis=axis))
    return np.where(lines.any(axis=1), lines.shape[1] - 1 - lines[:, ::-1].argmax(axis=1), 0).tolist()


def _all_along(masks: np.ndarray, size: int) -> np.ndarray:
    """True at x where ``masks[..., x : x + size]`` are all True (the last axis shrinks by ``size`` - 1):
    runs of 1, 2, 4, ... pixels, each two of the previous, then two overlapping ones."""
    n = masks.shape[-1]
    if size > n:
        return np.zeros((*masks.shape[:-1], 0), dtype=bool)
    run, span = masks, 1
    while 2 * span <= size:
        run, span = run[..., : n - 2 * span + 1] & run[..., span : n - span + 1], 2 * span
    return run[..., : n - size + 1] & run[..., size - span : n - span + 1]


def _window_fits(skies: np.ndarray, block: int) -> np.ndarray:
    """B x (H - block + 1) x (W - block + 1): where a ``block`` x ``block`` window lies wholly inside
    ``skies`` (``sky_windows``'s corners, of every image at once)."""
    rows = _all_along(skies, block)
    return _all_along(rows.swapaxes(1, 2), block).swapaxes(1, 2)


def _pixels(images: np.ndarray) -> np.ndarray:
    """B x H x W x C images as B x H x W whole pixels (one void item each, a view): copying pixels
    rather than their C values one by one is what makes the batched fills fast."""
    images = np.ascontiguousarray(images)
    return images.view(np.dtype((np.void, images.dtype.itemsize * images.shape[-1])))[..., 0]


def _resample_skies(images: np.ndarray, replaces: Sequence[np.ndarray], skies: np.ndarray,
                    rngs: Sequence[np.random.Generator], outs: Sequence[np.ndarray]) -> None:  # fmt: skip
    """Fill ``outs[v][k]``, a copy of ``images[k]``, as ``resample_sky`` does with ``replaces[v][k]``,
    ``skies[k]`` and ``rngs[k]``, for every view ``v`` of every image ``k``, view after view.

    Only the draws run image by image (each image's generator, in the same order as before); the
    window search and the copying of the windows (a mosaic of the drawn windows per image, read
    at its random phase, whole pixels at a time) run over the batch."""
    b, h, w = skies.shape
    blocks, count = np.ones(b, dtype=np.int64), np.zeros(b, dtype=np.int64)
    fits, block, undecided = {}, SKY_BLOCK_PX, np.ones(b, dtype=bool)
    while block > 1 and undecided.any():  # the largest block, halved from SKY_BLOCK_PX, that has MIN_WINDOWS windows
        fits[block] = _window_fits(skies, block)
        windows = fits[block].sum(axis=(1, 2))
        enough = undecided & (windows >= MIN_WINDOWS)
        blocks[enough], count[enough], undecided = block, windows[enough], undecided & ~enough
        block //= 2
    busy = [np.asarray(replace.any(axis=(1, 2))).tolist() for replace in replaces]
    last_row, last_col = [_last(replace, 2) for replace in replaces], [_last(replace, 1) for replace in replaces]
    phase = [[(0, 0)] * b for _ in replaces]
    choice = np.zeros((len(replaces), b, h // 2 + 1, w // 2 + 1), dtype=np.int64)  # the cells of the smallest block
    for k, (rng, block, windows) in enumerate(zip(rngs, blocks.tolist(), count.tolist())):
        for v, replace in enumerate(replaces):
            if not busy[v][k]:
                continue
            if block == 1:  # no window fits: single pixels (rare, so image by image)
                ys, xs = np.nonzero(replace[k])
                rows, cols = np.nonzero(skies[k])
                pick = rng.integers(len(rows), size=len(ys))
                outs[v][k, ys, xs] = images[k, rows[pick], cols[pick]]
                continue
            dy, dx = phase[v][k] = int(rng.integers(block)), int(rng.integers(block))
            cells = (last_row[v][k] + dy) // block + 1, (last_col[v][k] + dx) // block + 1
            choice[v, k, : cells[0], : cells[1]] = rng.integers(windows, size=cells)
    targets = [_pixels(out) for out in outs]
    for block in np.unique(blocks[blocks > 1]).tolist():
        group = np.flatnonzero(blocks == block)
        _, corner_y, corner_x = np.nonzero(fits[block][group])  # each image's windows, in np.argwhere's order
        first = (np.cumsum(count[group]) - count[group])[:, None, None]
        cells_y, cells_x = (h + block - 2) // block + 1, (w + block - 2) // block + 1  # reached at any phase
        windows = sliding_window_view(images[group], (block, block), axis=(1, 2))  # g x y x x x C x block x block
        for v, replace in enumerate(replaces):
            pick = first + choice[v, group, :cells_y, :cells_x]
            drawn = windows[np.arange(len(group))[:, None, None], corner_y[pick], corner_x[pick]]
            mosaic = drawn.transpose(0, 1, 4, 2, 5, 3).reshape(len(group), cells_y * block, cells_x * block, -1)
            mosaic = _pixels(mosaic)
            for i, k in enumerate(group.tolist()):
                if busy[v][k]:
                    dy, dx = phase[v][k]  # pixel (y, x) lies in cell ((y + dy) // block, (x + dx) // block)
                    np.copyto(targets[v][k], mosaic[i, dy : dy + h, dx : dx + w], where=replace[k])


def resample_sky(image: np.ndarray, replace: np.ndarray, sky: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` with its ``replace`` pixels copied, block by block, from random windows of ``sky``."""
    out = image[None].copy()
    _resample_skies(image[None], [replace[None]], sky[None], [rng], [out])
    return out[0]


def fill_views(images: np.ndarray, replaces: Sequence[np.ndarray], skies: np.ndarray, fill: str,
               rngs: Sequence[np.random.Generator], sigma: float) -> list[np.ndarray]:  # fmt: skip
    """``fill_region`` of B images for several masks at once: view ``v`` of image ``k`` is
    ``fill_region(images[k], replaces[v][k], skies[k], fill, rngs[k], sigma)``, called view after view,
    so each generator draws in the same order. The blur is computed once per image, not per view."""
    images = np.ascontiguousarray(images)
    outs = [images.copy() for _ in replaces]
    if not any(replace.any() for replace in replaces):
        return outs
    if fill == "sky":
        _resample_skies(images, replaces, skies, rngs, outs)
        return outs
    if fill == "blur":
        smooth = ndimage.gaussian_filter(images.astype(np.float32), sigma=(0, sigma, sigma, 0))
        texture = _pixels(np.clip(np.rint(smooth), 0, 255).astype(np.uint8).astype(images.dtype))
    elif fill == "mean":
        # sums of integers are exact in float64 in any order, so this is np.mean's number to the bit
        planes = _planes(images)
        mean = np.where(skies[:, None], planes, 0).sum(axis=(2, 3), dtype=np.float64) / skies.sum(axis=(1, 2))[:, None]
        level = _pixels(np.clip(np.rint(mean), 0, 255).astype(np.uint8).astype(images.dtype)[:, None, None])
        texture = np.broadcast_to(level, skies.shape)
    else:
        raise ValueError(f"saliency.probes.fill must be one of {FILLS}, got {fill!r}")
    for out, replace in zip(outs, replaces):
        np.copyto(_pixels(out), texture, where=replace)
    return outs


def fill_region(
    image: np.ndarray, replace: np.ndarray, sky: np.ndarray, fill: str, rng: np.random.Generator, sigma: float
) -> np.ndarray:
    """A copy of ``image`` (H x W x 3 uint8) whose ``replace`` pixels are filled from ``sky``, the
    mask of its source-free background (``sky_mask``), or smoothed by ``sigma`` px (``blur``)."""
    return fill_views(image[None], [replace[None]], sky[None], fill, [rng], sigma)[0][0]


def image_seed(seed: int, image_id: str) -> np.random.Generator:
    """A generator that depends on the image's id only, so the probes do not depend on sharding."""
    return np.random.default_rng([seed, zlib.crc32(image_id.encode())])


def probe_images(
    images: np.ndarray,
    masks: np.ndarray,
    areas: np.ndarray,
    ids: Sequence[str],
    fill: str,
    radius: float,
    seed: int,
    control: str = "redraw",
    neighbours: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Object-only, background-only and control versions of B x H x W x 3 images, and a state per image.

    ``masks`` are the object regions, ``areas`` the pixels that are the image's own
    (not padding, which stays as it is). An image with an empty region gets
    ``empty_object``, one whose object part leaves no background ``no_background``;
    both are returned unchanged. ``control`` is one of ``CONTROLS``; ``neighbours`` (B x H x W, optional)
    the other segments of each image, which never join its object's part.

    The work runs over the whole batch (``CHUNK_PIXELS`` at a time), not image by image: only
    each image's seeded draws do; the views are those of the image-by-image functions, bit for bit.
    """
    if control not in CONTROLS:
        raise ValueError(f"saliency.probes.control must be one of {CONTROLS}, got {control!r}")
    ids = list(ids)
    object_only, background_only, controls = images.copy(), images.copy(), images.copy()
    state = np.full(len(images), STATE_OK, dtype=object)
    present = (masks & areas).any(axis=(1, 2))
    state[~present] = STATE_EMPTY_OBJECT
    todo = np.flatnonzero(present)
    step = max(1, CHUNK_PIXELS // max(1, masks[0].size if len(masks) else 1))
    for start in range(0, len(todo), step):
        chunk = todo[start : start + step]
        pixels = images[chunk]
        planes = _planes(pixels)
        others = None if neighbours is None else neighbours[chunk]
        parts = _object_parts(planes, masks[chunk], areas[chunk], radius, others)
        backgrounds = areas[chunk] & ~parts
        has = backgrounds.any(axis=(1, 2))
        state[chunk[~has]] = STATE_NO_BACKGROUND
        keep, pixels, parts, backgrounds = chunk[has], pixels[has], parts[has], backgrounds[has]
        skies = _sky_masks(planes[has], backgrounds)
        replaced = backgrounds & skies if control == "refill" else backgrounds
        rngs = [image_seed(seed, ids[k]) for k in keep.tolist()]
        views = fill_views(pixels, [backgrounds, parts, replaced], skies, fill, rngs, radius)  # drawn in this order
        object_only[keep], background_only[keep], controls[keep] = views
    return object_only, background_only, controls, state


def margins(logits: np.ndarray) -> np.ndarray:
    """B x C margins: each class's logit minus the best logit of the other classes."""
    logits = np.asarray(logits, dtype=np.float64)
    order = np.sort(logits, axis=1)
    best, second = order[:, -1:], order[:, -2:-1]
    return logits - np.where(logits >= best, second, best)


def control_effect(margin: np.ndarray, margin_object_only: np.ndarray, margin_control: np.ndarray,
                   control: str) -> np.ndarray:  # fmt: skip
    """How far the control moves the predicted class's margin: against the image (``refill``), or
    between the two draws of the object-only view (``redraw``)."""
    reference = margin if control == "refill" else margin_object_only
    return np.abs(np.asarray(reference, dtype=np.float64) - np.asarray(margin_control, dtype=np.float64))


def background_reliance(
    margin: np.ndarray, margin_object_only: np.ndarray, effect: np.ndarray | float = 0.0
) -> np.ndarray:
    """Share of a positive margin lost when the background is replaced, beyond the control's ``effect``,
    clipped to [0, 1]; NaN where there is no margin to lose."""
    margin = np.asarray(margin, dtype=np.float64)
    lost = (margin - np.asarray(margin_object_only, dtype=np.float64) - effect) / np.where(margin > 0, margin, 1.0)
    return np.where(margin > 0, np.clip(lost, 0.0, 1.0), np.nan)


def uncertain(margin: np.ndarray, effect: np.ndarray) -> np.ndarray:
    """The verdicts the fill alone could decide: the margin is no larger than the control's effect."""
    return np.asarray(margin, dtype=np.float64) <= np.asarray(effect, dtype=np.float64)
