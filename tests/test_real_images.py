"""Image conversion and object regions on real images that the installed packages ship.

M13 (astropy's test data: a globular cluster, 300 x 300 integers from 109 to 3618, a
12-bit range in a 16-bit file) and Grace Hopper's portrait (matplotlib's sample data).
Each check has its counterfactual: the same pixels under the old rules, or unpadded.
"""

from pathlib import Path

import matplotlib
import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from saliency_audit.data.image_io import center_crop_pad, image_area, load_rgb, nearly_constant
from saliency_audit.data.regions import object_regions, threshold_regions

ASTROPY = Path(fits.__file__).parent
M13 = ASTROPY / "hdu/compressed/tests/data/m13.fits"
HOPPER = Path(matplotlib.get_data_path()) / "sample_data/grace_hopper.jpg"


@pytest.fixture(scope="module")
def m13() -> np.ndarray:
    return fits.getdata(M13).astype(np.int64)


def test_a_12_bit_telescope_image_packs_with_its_structure(tmp_path: Path, m13: np.ndarray) -> None:
    Image.fromarray(m13.astype(np.uint16)).save(tmp_path / "m13.png")
    flux = (m13 * 1e-5).astype(np.float32)  # calibrated fluxes of order 0.01
    flux[:4] = np.nan  # a blank strip, as survey cutouts have at their edges
    fits.PrimaryHDU(np.flipud(flux)).writeto(tmp_path / "m13.fits")  # FITS rows run bottom-up
    png, fit = load_rgb(tmp_path / "m13.png", 10**6), load_rgb(tmp_path / "m13.fits", 10**6)
    assert not nearly_constant(png) and png.max() == 255 and len(np.unique(png)) > 200  # the full 8-bit range
    rows = slice(4, None)
    assert np.abs(png[rows].astype(int) - fit[rows].astype(int)).max() <= 1  # the stretch ignores the units
    assert (fit[:4] == 0).all()
    # counterfactual: the former rules, 16 bits divided by 65535 and floats cast to bytes
    assert (np.round(m13 / 65535 * 255)).max() <= 15 and nearly_constant(flux[rows].astype(np.uint8))


def test_a_real_photograph_is_not_constant_and_its_blackened_copy_is(tmp_path: Path) -> None:
    photo = load_rgb(HOPPER, 10**7)
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
