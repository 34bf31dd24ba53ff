"""Real images that the installed packages ship, cut the way the real-image checks cut them.

M13 is the globular cluster that astropy ships as test data (300 x 300 integers from 109 to 3618).
"""

from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy import ndimage

M13 = Path(fits.__file__).parent / "hdu/compressed/tests/data/m13.fits"
STAMP = 32  # px, as benchmarks/real_probes.py cuts them


def m13_image() -> np.ndarray:
    return fits.getdata(M13).astype(np.int64)


def clipped_stats(values: np.ndarray, rounds: int = 10) -> tuple[float, float]:
    """Median and robust sigma (1.4826 MAD) after iterative 3-sigma clipping."""
    x = np.asarray(values, dtype=np.float64).ravel()
    for _ in range(rounds):
        median = np.median(x)
        sigma = 1.4826 * np.median(np.abs(x - median))
        x = x[np.abs(x - median) <= 3 * sigma]
    return float(median), float(sigma)


def m13_star_stamps(m13: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The crowded stamps of benchmarks/real_probes.py: a 32 px stamp centred on every star (a local maximum
    of the smoothed image 5 robust sigma above the sky, 6 px from a brighter one, half a stamp from the
    border), from one asinh stretch of the whole image; with the rows and columns of the stars."""
    data = m13.astype(np.float64)
    smooth = ndimage.gaussian_filter(data, 1.0)
    sky, sigma = clipped_stats(smooth)
    peaks = (smooth == ndimage.maximum_filter(smooth, size=7)) & (smooth > sky + 5 * sigma)
    half = STAMP // 2
    peaks[:half], peaks[-half:], peaks[:, :half], peaks[:, -half:] = False, False, False, False
    ys, xs = np.nonzero(peaks)
    kept: list[int] = []
    for i in np.argsort(-smooth[ys, xs], kind="stable"):  # brightest first
        if all((ys[i] - ys[j]) ** 2 + (xs[i] - xs[j]) ** 2 >= 6**2 for j in kept):
            kept.append(i)
    kept.sort(key=lambda i: (ys[i], xs[i]))
    y, x = ys[kept], xs[kept]
    sky, sigma = clipped_stats(data)
    values = np.arcsinh((data - sky) / sigma)
    lo, hi = np.percentile(values, (0.5, 99.9))
    gray = np.clip(np.round((values - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)
    stamps = np.stack(
        [np.repeat(gray[r - half : r + half, c - half : c + half, None], 3, axis=2) for r, c in zip(y, x)]
    )
    return stamps, y, x
