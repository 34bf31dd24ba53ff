"""Image conversion and object regions on real images that the installed packages ship.

M13 (astropy's test data: a globular cluster, 300 x 300 integers from 109 to 3618, a
12-bit range in a 16-bit file) and Grace Hopper's portrait (matplotlib's sample data).
Each check has its counterfactual: the same pixels under the old rules, unpadded, or
with the threshold segmentation instead of the deblended segments.
"""

from pathlib import Path

import matplotlib
import numpy as np
import pytest
from astropy.io import fits
from PIL import Image
from scipy import ndimage

from real_images import STAMP
from saliency_audit.audit.map_geometry import MapGeometry
from saliency_audit.data.image_io import Decoding, center_crop_pad, image_area, load_image, nearly_constant
from saliency_audit.data.regions import object_regions, segment_regions, threshold_regions
from saliency_audit.saliency.strategies import kmeans_clusters, map_features, object_features, spectral_clusters

HOPPER = Path(matplotlib.get_data_path()) / "sample_data/grace_hopper.jpg"


def test_a_12_bit_telescope_image_packs_with_its_structure(tmp_path: Path, m13: np.ndarray) -> None:
    Image.fromarray(m13.astype(np.uint16)).save(tmp_path / "m13.png")
    flux = (m13 * 1e-5).astype(np.float32)  # calibrated fluxes of order 0.01
    flux[:4] = np.nan  # a blank strip, as survey cutouts have at their edges
    fits.PrimaryHDU(np.flipud(flux)).writeto(tmp_path / "m13.fits")  # FITS rows run bottom-up
    png, fit = load_image(tmp_path / "m13.png", 10**6), load_image(tmp_path / "m13.fits", 10**6)
    assert not nearly_constant(png) and png.max() == 255 and len(np.unique(png)) > 200  # the full 8-bit range
    rows = slice(4, None)
    assert np.abs(png[rows].astype(int) - fit[rows].astype(int)).max() <= 1  # the stretch ignores the units
    sky = fit[rows][..., 0].astype(float)
    assert (np.abs(fit[:4].astype(float) - np.median(sky)) <= 1).all()  # the blank strip is sky, not black
    # counterfactual: the former rules, 16 bits divided by 65535 and floats cast to bytes
    assert (np.round(m13 / 65535 * 255)).max() <= 15 and nearly_constant(flux[rows].astype(np.uint8))


def test_on_a_real_cluster_asinh_keeps_the_core_that_linear_saturates_and_zscale_shows_the_sky(
    tmp_path: Path, m13: np.ndarray
) -> None:
    flux = (m13 * 1e-5).astype(np.float32)
    fits.PrimaryHDU(np.flipud(flux)).writeto(tmp_path / "m13.fits")
    shown = {
        stretch: load_image(tmp_path / "m13.fits", 10**6, Decoding(stretch, 0.1, None))[..., 0]
        for stretch in ("linear", "asinh", "zscale")
    }
    core = m13 >= np.percentile(m13, 99)  # the brightest 1%: the cluster's centre and its brightest stars
    saturated = {stretch: float((pixels[core] == 255).mean()) for stretch, pixels in shown.items()}
    assert saturated["linear"] > 0.4 and saturated["asinh"] < 0.15  # measured: 0.50 and 0.10
    assert np.median(shown["zscale"]) > 5 * np.median(shown["linear"])  # the sky, which linear leaves near black


def test_a_real_photograph_is_not_constant_and_its_blackened_copy_is(tmp_path: Path) -> None:
    photo = load_image(HOPPER, 10**7)
    assert not nearly_constant(photo)
    assert nearly_constant(np.zeros_like(photo)) and nearly_constant(np.full_like(photo, 255))


def test_the_cluster_s_region_is_the_same_padded_or_not(m13: np.ndarray) -> None:
    gray = np.clip(np.round((m13 - 100) / 3600 * 255), 0, 255).astype(np.uint8)
    cy, cx = np.unravel_index(np.argmax(np.asarray(Image.fromarray(gray).resize((30, 30)))), (30, 30))
    cy, cx = int(cy * 10 + 5), int(cx * 10 + 5)  # the brightest part of the cluster
    crop = np.repeat(gray[cy - 24 : cy + 24, cx - 24 : cx + 24, None], 3, axis=2)
    padded = center_crop_pad(crop, 80)[None]
    masks, problems = object_regions(
        {"method": "threshold", "nsigma": 2.0}, ["m13"], padded, None, [(48, 48)], 25_000_000
    )
    assert problems == [] and masks.any()
    assert not (masks[0] & ~image_area(48, 48, 80)).any()
    np.testing.assert_array_equal(masks[0, 16:64, 16:64], threshold_regions(crop[None], 2.0)[0])
    # counterfactual: padding taken for sky makes the region bigger than the image's own segmentation
    assert threshold_regions(padded, 2.0)[0].sum() > masks.sum()


def test_deblended_segments_find_the_star_of_most_crowded_stamps(m13_stamps: tuple[np.ndarray, ...]) -> None:
    stamps, y, x = m13_stamps
    assert len(stamps) == 300
    objects, neighbours = segment_regions(stamps, 2.0, 5, 0.001)  # the schema's nsigma, npixels, contrast
    merged = threshold_regions(stamps, 2.0)
    found, found_before = objects.any(axis=(1, 2)), merged.any(axis=(1, 2))
    # counterfactual: the threshold region exists on 94 stamps (issue 35: 93 of 300 in the workflow); the
    # segments on 203. Not the 90% the issue asks for: in the crowded core the border's clipped noise is the
    # other stars' light, and the centred star does not rise 2 of it above the border's level.
    assert found_before.mean() < 0.35 and found.mean() > 0.65 and found.sum() > 2 * found_before.sum()
    assert not (objects & neighbours).any() and neighbours[found].any(axis=(1, 2)).mean() > 0.95
    # the object is the stamp's star: its peak is the stamp's pixel (16, 16)
    assert objects[found, STAMP // 2, STAMP // 2].mean() > 0.95
    # and keeps the other stars of the stamp out, which the threshold region takes in
    inside = {"segments": 0, "threshold": 0}
    for k in range(len(stamps)):
        rows, columns = y - y[k] + STAMP // 2, x - x[k] + STAMP // 2
        other = (rows >= 0) & (rows < STAMP) & (columns >= 0) & (columns < STAMP) & (np.arange(len(stamps)) != k)
        inside["segments"] += int(objects[k, rows[other], columns[other]].sum())
        inside["threshold"] += int(merged[k, rows[other], columns[other]].sum())
    assert inside["segments"] / found.sum() < 0.05 < 0.5 < inside["threshold"] / found_before.sum(), inside


def planted_strategies(m13_stamps: tuple[np.ndarray, ...], planted_every: int) -> tuple[np.ndarray, ...]:
    """Maps of two ways of deciding on real stars: every map follows its stamp's own star (its light in
    the deblended object segment, smoothed as a coarse map is); every ``planted_every``-th also, and
    more, a real neighbouring source (a spot on the brightest pixel of another segment). With the
    object regions and the truth. Stamps without a segmented star or neighbour are left out."""
    stamps = m13_stamps[0]
    objects, neighbours = segment_regions(stamps, 2.0, 5, 0.001)
    usable = objects.any(axis=(1, 2)) & neighbours.any(axis=(1, 2))
    stamps, objects, neighbours = stamps[usable], objects[usable], neighbours[usable]
    light = stamps[..., 0].astype(np.float64)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:STAMP, 0:STAMP]
    maps, truth = [], []
    for k in range(len(stamps)):
        on = ndimage.gaussian_filter(light[k] * objects[k], 1.5)
        on /= on.max()
        planted = planted_every > 0 and k % planted_every == 0
        if planted:
            ys, xs = np.nonzero(neighbours[k])
            j = int(np.argmax(light[k][ys, xs]))
            on = 0.4 * on + np.exp(-((yy - ys[j]) ** 2 + (xx - xs[j]) ** 2) / (2 * 2.0**2))
        maps.append(on * rng.uniform(0.5, 2.0) + rng.uniform(0, 0.05, on.shape))
        truth.append(planted)
    return np.array(maps), objects, np.array(truth)


@pytest.mark.parametrize(("planted_every", "purity", "found"), [(2, 0.85, 0.8), (4, 0.5, 0.8)])
def test_planted_strategies_on_real_stars_are_found_by_their_place_around_the_object(
    m13_stamps: tuple[np.ndarray, ...], planted_every: int, purity: float, found: float
) -> None:
    maps, objects, truth = planted_strategies(m13_stamps, planted_every)
    result = kmeans_clusters(object_features(maps, objects), 8, seed=0)
    assert result.n_clusters >= 2 and result.chosen_by == "silhouette"
    shares = np.array([truth[result.labels == k].mean() for k in range(result.n_clusters)])
    best = int(np.argmax(shares))  # the planted strategy's cluster: mostly planted maps, holding most of them
    assert shares[best] >= purity and truth[result.labels == best].sum() >= found * truth.sum()
    # counterfactual: the profile around the stamp centre (the former default) does not find it
    radial = spectral_clusters(map_features(maps, "radial", MapGeometry((0.0, 0.0), (1.0, 1.0)), STAMP), 10, 8, 0)
    assert radial.n_clusters == 1 or max(truth[radial.labels == k].mean() for k in range(radial.n_clusters)) < purity
