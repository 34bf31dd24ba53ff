"""GalSim rendering of SDSS-like gri cutouts of the demo galaxies.

Each cutout holds a central bulge + disk galaxy (with star-forming knots in
blue disks), random neighbouring galaxies and field stars, all convolved with
one Kolmogorov seeing PSF and observed through GalSim's shipped LSST g, r, i
bandpasses (the closest stand-ins for SDSS's) with sky noise. Every profile is
drawn once at unit flux and scaled by its band fluxes (colours from the
redshifted SEDs), which is exact for one PSF and three times cheaper than
drawing each band. Fluxes are in
nanomaggies, like SDSS frames, and the RGB composite uses the asinh stretch of
Lupton et al. (2004), as SDSS cutouts do.
"""

import os
from dataclasses import dataclass
from functools import cache

import galsim
import numpy as np
from astropy.visualization import make_lupton_rgb
from scipy.ndimage import distance_transform_edt

from saliency_audit.demo.galaxy_model import GalaxyParams, mag_to_nanomaggies

BANDS = ("g", "r", "i")
SDSS_EXPOSURE_COUNTS_PER_NMGY = {"g": 130.0, "r": 190.0, "i": 140.0}
SKY_MAG_PER_ARCSEC2 = {"g": 22.0, "r": 20.9, "i": 20.2}
RGB_BAND_SCALE = {"g": 2.2, "r": 1.3, "i": 1.0}  # balance of the gri -> RGB composite
BULGE_SED, DISK_SEDS = "CWW_E_ext", ("CWW_Sbc_ext", "CWW_Im_ext")
STAR_COLOURS = {"g": 0.55, "r": 0.0, "i": -0.18}  # G-K dwarf, m_band - m_r
KNOTS_PER_GALAXY = 16
MIN_STAR_CLEARANCE_PX = 12.0  # 1.5 cells of an 8 x 8 Grad-CAM map of a 64 px cutout
STAR_MARGIN_PX = 4


@dataclass(frozen=True)
class SkySettings:
    """Observing conditions and field contents shared by every cutout."""

    stamp_size: int = 64
    pixel_scale: float = 0.396
    seeing: tuple[float, float] = (1.1, 1.6)
    neighbours_per_stamp: float = 0.4
    stars_per_stamp: float = 0.3
    mask_surface_brightness: float = 24.5  # 0.4 sky sigma per pixel: the visible galaxy, outer disk included


@dataclass(frozen=True)
class Shortcut:
    """A bright star planted off the galaxy: a background cue a model may learn.

    Saturated and several pixels wide, like bright stars in SDSS cutouts, so that
    it is as easy a cue as the galaxy's own colour and bulge.
    """

    magnitude: tuple[float, float] = (11.5, 12.5)


@dataclass
class Stamp:
    """One rendered cutout: noisy band images, the object mask, and what was put in it.

    ``twin`` is the same cutout with only the central galaxy: the same PSF and
    the very same noise, but no planted star, neighbours or field stars, so that
    ``bands - twin`` is exactly the off-object sources.
    """

    bands: dict[str, np.ndarray]
    twin: dict[str, np.ndarray]
    mask: np.ndarray
    petro_r90: float
    psf_fwhm: float
    n_neighbours: int
    n_stars: int
    star_xy: tuple[float, float] | None


@cache
def _bandpass(band: str) -> galsim.Bandpass:
    path = os.path.join(galsim.meta_data.share_dir, "bandpasses", f"LSST_{band}.dat")
    return galsim.Bandpass(path, wave_type="nm").thin().withZeropoint("AB")


@cache
def _sed(name: str) -> galsim.SED:
    path = os.path.join(galsim.meta_data.share_dir, "SEDs", f"{name}.sed")
    return galsim.SED(path, wave_type="Ang", flux_type="flambda")


@cache
def _colour_table(name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """m_band - m_r of an SED on a redshift grid (the K-correction in colour)."""
    z_grid = np.linspace(0.0, 0.4, 81)
    colours = {band: np.empty_like(z_grid) for band in BANDS}
    for k, z in enumerate(z_grid):
        sed = _sed(name).atRedshift(float(z))
        m_r = sed.calculateMagnitude(_bandpass("r"))
        for band in BANDS:
            colours[band][k] = sed.calculateMagnitude(_bandpass(band)) - m_r
    return z_grid, colours


def sed_colour(name: str, band: str, redshift: float) -> float:
    """Colour m_band - m_r of a redshifted SED, interpolated from a cached grid."""
    z_grid, colours = _colour_table(name)
    return float(np.interp(redshift, z_grid, colours[band]))


def _band_fluxes(total_r: float, colours: dict[str, float]) -> dict[str, float]:
    return {band: total_r * 10.0 ** (-0.4 * colours[band]) for band in BANDS}


Component = tuple[galsim.GSObject, dict[str, float]]  # unit-flux profile, flux per band


def _central_galaxy(p: GalaxyParams, deviate: galsim.BaseDeviate) -> list[Component]:
    """Bulge, disk and star-forming knots of the central galaxy."""
    flux_r = float(mag_to_nanomaggies(p.mag_r))
    beta = p.position_angle * galsim.degrees
    disk_shear = galsim.Shear(q=p.axis_ratio, beta=beta)
    bulge_shear = galsim.Shear(q=min(1.0, 0.5 + 0.6 * p.axis_ratio), beta=beta)
    disk_colour = {
        b: (1 - p.disk_blueness) * sed_colour(DISK_SEDS[0], b, p.redshift)
        + p.disk_blueness * sed_colour(DISK_SEDS[1], b, p.redshift)
        for b in BANDS
    }
    components = [
        (
            galsim.DeVaucouleurs(half_light_radius=p.bulge_hlr).shear(bulge_shear),
            _band_fluxes(flux_r * p.bulge_fraction, {b: sed_colour(BULGE_SED, b, p.redshift) for b in BANDS}),
        ),
        (
            galsim.Exponential(half_light_radius=p.disk_hlr).shear(disk_shear),
            _band_fluxes(flux_r * (1 - p.bulge_fraction) * (1 - p.knot_fraction), disk_colour),
        ),
    ]
    if p.knot_fraction > 0.01:
        knots = galsim.RandomKnots(KNOTS_PER_GALAXY, half_light_radius=p.disk_hlr, flux=1.0, rng=deviate)
        knot_flux = flux_r * (1 - p.bulge_fraction) * p.knot_fraction
        components.append(
            (
                knots.shear(disk_shear),
                _band_fluxes(knot_flux, {b: sed_colour(DISK_SEDS[1], b, p.redshift) for b in BANDS}),
            )
        )
    return components


def _neighbour(rng: np.random.Generator) -> Component:
    """A fainter, smaller galaxy elsewhere in the field (no metallicity meaning).

    Fainter than the flux-limited central galaxy: SDSS counts give about 0.4
    galaxies of r < 22 and 0.3 stars of r < 21.5 per 25" cutout at high latitude.
    """
    mag_r = rng.uniform(18.5, 22.0)
    shear = galsim.Shear(q=rng.uniform(0.3, 1.0), beta=rng.uniform(0, 180) * galsim.degrees)
    redshift = rng.uniform(0.05, 0.3)
    sed = DISK_SEDS[int(rng.integers(2))] if rng.random() < 0.6 else BULGE_SED
    profile = galsim.Sersic(n=float(rng.choice([1.0, 4.0])), half_light_radius=rng.uniform(0.6, 2.5)).shear(shear)
    return profile, _band_fluxes(float(mag_to_nanomaggies(mag_r)), {b: sed_colour(sed, b, redshift) for b in BANDS})


def _star(mag_r: float) -> Component:
    return galsim.DeltaFunction(), _band_fluxes(float(mag_to_nanomaggies(mag_r)), STAR_COLOURS)


def _offsets_outside(rng: np.random.Generator, n: int, inner: float, outer: float) -> list[tuple[float, float]]:
    """Random positions (arcsec from centre) in an annulus, uniform in area."""
    radius = np.sqrt(rng.uniform(inner**2, outer**2, n))
    angle = rng.uniform(0.0, 2 * np.pi, n)
    return [(float(r * np.cos(a)), float(r * np.sin(a))) for r, a in zip(radius, angle)]


def _clear_of_object(rng: np.random.Generator, mask: np.ndarray, scale: float) -> tuple[float, float]:
    """Offset (arcsec) of a random pixel well clear of the object mask.

    Off-object placement is what makes the planted star a background cue. Any
    pixel at least MIN_STAR_CLEARANCE_PX from the mask (and STAR_MARGIN_PX from
    the border) may be chosen; when the galaxy fills the stamp, the clearest ones.
    """
    size = mask.shape[0]
    clearance = distance_transform_edt(~mask) if mask.any() else np.full(mask.shape, np.inf)
    inner = clearance[STAR_MARGIN_PX:-STAR_MARGIN_PX, STAR_MARGIN_PX:-STAR_MARGIN_PX]
    allowed = inner >= min(MIN_STAR_CLEARANCE_PX, inner.max())
    rows, cols = np.nonzero(allowed)
    k = int(rng.integers(len(rows)))
    jitter = rng.uniform(-0.5, 0.5, 2)
    centre = (size - 1) / 2
    # mask rows are still GalSim's (bottom first), so the row index is y
    return (
        float((cols[k] + STAR_MARGIN_PX - centre + jitter[0]) * scale),
        float((rows[k] + STAR_MARGIN_PX - centre + jitter[1]) * scale),
    )


def _radius_enclosing(image: np.ndarray, fraction: float, pixel_scale: float) -> float:
    """Radius (arcsec) around the stamp centre holding ``fraction`` of the flux."""
    ny, nx = image.shape
    yy, xx = np.indices(image.shape)
    r = np.hypot(xx - (nx - 1) / 2, yy - (ny - 1) / 2).ravel()
    order = np.argsort(r)
    cumulative = np.cumsum(np.clip(image.ravel()[order], 0, None))
    k = int(np.searchsorted(cumulative, fraction * cumulative[-1]))
    return float(r[order][min(k, r.size - 1)] * pixel_scale)


def _draw(components: list[Component], psf: galsim.GSObject, size: int, scale: float) -> dict[str, np.ndarray]:
    """Noiseless band images: each unit-flux profile is drawn once, then scaled per band."""
    bands = {b: np.zeros((size, size)) for b in BANDS}
    for profile, fluxes in components:
        unit = galsim.Convolve(profile, psf).drawImage(nx=size, ny=size, scale=scale).array
        for b in BANDS:
            bands[b] += fluxes[b] * unit
    return bands


def render_stamp(
    p: GalaxyParams,
    seed: int,
    sky: SkySettings,
    shortcut: Shortcut | None,
) -> Stamp:
    """Render one cutout (rows top to bottom); ``shortcut`` plants a bright star outside the galaxy.

    The returned stamp also holds its twin: the central galaxy alone, with the
    same noise. Drawing it takes no random numbers, so the cutout is unchanged.
    """
    rng = np.random.default_rng(seed)
    deviate = galsim.BaseDeviate(seed)
    scale, size = sky.pixel_scale, sky.stamp_size
    half_width = size * scale / 2.0
    fwhm = float(rng.uniform(*sky.seeing))
    psf = galsim.Kolmogorov(fwhm=fwhm)

    central = _draw(_central_galaxy(p, deviate), psf, size, scale)
    mask = central["r"] > float(mag_to_nanomaggies(sky.mask_surface_brightness)) * scale**2
    petro_r90 = _radius_enclosing(central["r"], 0.9, scale)

    extras: list[Component] = []
    n_neighbours = int(rng.poisson(sky.neighbours_per_stamp))
    for offset in _offsets_outside(rng, n_neighbours, 0.3 * half_width, 1.3 * half_width):
        profile, fluxes = _neighbour(rng)
        extras.append((profile.shift(*offset), fluxes))
    n_stars = int(rng.poisson(sky.stars_per_stamp))
    for offset in _offsets_outside(rng, n_stars, 0.25 * half_width, 1.05 * half_width):
        profile, fluxes = _star(float(rng.uniform(17.0, 21.5)))
        extras.append((profile.shift(*offset), fluxes))
    star_xy = None
    if shortcut is not None:
        dx, dy = _clear_of_object(rng, mask, scale)
        profile, fluxes = _star(float(rng.uniform(*shortcut.magnitude)))
        extras.append((profile.shift(dx, dy), fluxes))
        star_xy = ((size - 1) / 2 + dx / scale, (size - 1) / 2 - dy / scale)

    field = _draw(extras, psf, size, scale)
    bands, twin = {}, {}
    for band in BANDS:
        sky_per_pixel = float(mag_to_nanomaggies(SKY_MAG_PER_ARCSEC2[band])) * scale**2
        sigma = np.sqrt(sky_per_pixel / SDSS_EXPOSURE_COUNTS_PER_NMGY[band])
        noise = rng.normal(0.0, sigma, (size, size))
        # GalSim's first row is the bottom of the sky; image files start at the top.
        bands[band] = (central[band] + field[band] + noise)[::-1].astype(np.float32)
        twin[band] = (central[band] + noise)[::-1].astype(np.float32)
    return Stamp(bands, twin, mask[::-1].copy(), petro_r90, fwhm, n_neighbours, n_stars, star_xy)


def to_rgb(bands: dict[str, np.ndarray], stretch: float = 0.45, q: float = 8.0) -> np.ndarray:
    """SDSS-style asinh composite: i, r, g mapped to red, green, blue (uint8, H x W x 3)."""
    return make_lupton_rgb(
        bands["i"] * RGB_BAND_SCALE["i"],
        bands["r"] * RGB_BAND_SCALE["r"],
        bands["g"] * RGB_BAND_SCALE["g"],
        minimum=0.0,
        stretch=stretch,
        Q=q,
    )
