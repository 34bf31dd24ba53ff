"""Physical parameters of the demo galaxies.

Stellar mass is the hidden variable: it sets gas-phase metallicity through a
mass-metallicity relation with scatter, and also luminosity, size, bulge
fraction and colour. The metallicity classes are therefore learnable from the
image of the galaxy itself, as they are in real SDSS data.
"""

from dataclasses import dataclass

import numpy as np
from astropy.cosmology import FlatLambdaCDM

COSMOLOGY = FlatLambdaCDM(H0=70.0, Om0=0.3)
NANOMAGGY_ZEROPOINT = 22.5  # SDSS: 1 nanomaggy is AB magnitude 22.5

# Mass-metallicity relation in the asymptotic form of Zahid et al. (2014):
# Z = Z0 + log10(1 - exp(-(M / M0) ** gamma)).
MZR_Z0 = 9.22
MZR_LOG_M0 = 10.0
MZR_GAMMA = 0.6

# Scatter of appearance at fixed mass: galaxies of one mass differ in luminosity
# (mag), bulge fraction, size (dex) and disk colour, so mass, and with it the
# class, is read from an image only approximately, as in real data.
APPEARANCE_SCATTER = {"mag": 0.6, "bulge": 0.25, "size_dex": 0.2, "blueness": 0.3}


@dataclass(frozen=True)
class GalaxyParams:
    """Everything needed to render one central galaxy (angles in arcsec, degrees)."""

    log_mass: float
    metallicity: float
    redshift: float
    mag_r: float
    bulge_fraction: float
    disk_hlr: float
    bulge_hlr: float
    axis_ratio: float
    position_angle: float
    disk_blueness: float
    knot_fraction: float


def mass_metallicity(log_mass: np.ndarray | float) -> np.ndarray:
    """Mean 12 + log(O/H) at a stellar mass: steep at low mass, flat at high mass."""
    m = 10.0 ** (np.asarray(log_mass, dtype=float) - MZR_LOG_M0)
    return MZR_Z0 + np.log10(1.0 - np.exp(-(m**MZR_GAMMA)))


def arcsec_per_kpc(redshift: np.ndarray | float) -> np.ndarray:
    """Angular scale, so that physical sizes shrink with distance."""
    return 1.0 / COSMOLOGY.kpc_proper_per_arcmin(redshift).value * 60.0


def distance_modulus(redshift: np.ndarray | float) -> np.ndarray:
    return np.asarray(COSMOLOGY.distmod(redshift).value)


def redshift_limit(abs_mag: np.ndarray | float, mag_limit: float) -> np.ndarray:
    """Largest redshift at which a galaxy of absolute magnitude ``abs_mag`` is still brighter than ``mag_limit``."""
    z_grid = np.geomspace(1e-4, 1.0, 400)
    return np.interp(mag_limit - np.asarray(abs_mag, dtype=float), distance_modulus(z_grid), z_grid)


def draw_galaxies(
    n: int,
    rng: np.random.Generator,
    log_mass_range: tuple[float, float],
    redshift_range: tuple[float, float],
    metallicity_scatter: float,
    mag_limit: float | None = None,
) -> list[GalaxyParams]:
    """Draw ``n`` galaxies whose appearance follows their stellar mass.

    Galaxies fill the volume of ``redshift_range`` uniformly; with ``mag_limit`` (r,
    like the SDSS main galaxy sample's 17.77) only the volume in which the galaxy
    is brighter than the limit, so the sample is flux limited: dwarfs lie nearby and
    appear large and bright, massive galaxies are seen out to the upper redshift.
    A galaxy too faint even at the lower redshift is placed there.
    """
    log_mass = rng.uniform(*log_mass_range, n)
    metallicity = mass_metallicity(log_mass) + rng.normal(0.0, metallicity_scatter, n)

    # Brighter with mass (M/L rises slowly), fainter with distance.
    abs_mag_r = -20.6 - 1.85 * (log_mass - 10.0) + rng.normal(0.0, APPEARANCE_SCATTER["mag"], n)
    z_low, z_high = redshift_range
    if mag_limit is not None:
        z_high = np.clip(redshift_limit(abs_mag_r, mag_limit), z_low, z_high)
    z = np.cbrt(rng.uniform(z_low**3, np.asarray(z_high) ** 3, n))  # uniform in volume (Euclidean, z << 1)
    mag_r = abs_mag_r + distance_modulus(z)

    # Massive galaxies are bulge dominated, larger and redder.
    bulge_fraction = np.clip(
        0.85 / (1.0 + np.exp(-(log_mass - 10.4) / 0.3)) + rng.normal(0.0, APPEARANCE_SCATTER["bulge"], n), 0.0, 0.9
    )
    disk_kpc = 10.0 ** (0.5 + 0.2 * (log_mass - 10.0) + rng.normal(0.0, APPEARANCE_SCATTER["size_dex"], n))
    bulge_kpc = disk_kpc * rng.uniform(0.25, 0.45, n) * (1.0 + bulge_fraction)
    scale = arcsec_per_kpc(z)
    inclination = np.arccos(rng.uniform(0.0, 1.0, n))
    axis_ratio = np.sqrt(np.cos(inclination) ** 2 + 0.2**2 * np.sin(inclination) ** 2)
    disk_blueness = np.clip(
        1.0 / (1.0 + np.exp((log_mass - 9.9) / 0.35)) + rng.normal(0, APPEARANCE_SCATTER["blueness"], n), 0, 1
    )
    knot_fraction = 0.25 * disk_blueness * rng.uniform(0.5, 1.0, n)

    return [
        GalaxyParams(
            log_mass=float(log_mass[i]),
            metallicity=float(metallicity[i]),
            redshift=float(z[i]),
            mag_r=float(mag_r[i]),
            bulge_fraction=float(bulge_fraction[i]),
            disk_hlr=float(disk_kpc[i] * scale[i]),
            bulge_hlr=float(bulge_kpc[i] * scale[i]),
            axis_ratio=float(axis_ratio[i]),
            position_angle=float(rng.uniform(0.0, 180.0)),
            disk_blueness=float(disk_blueness[i]),
            knot_fraction=float(knot_fraction[i]),
        )
        for i in range(n)
    ]


def mag_to_nanomaggies(mag: np.ndarray | float) -> np.ndarray:
    return 10.0 ** (-0.4 * (np.asarray(mag, dtype=float) - NANOMAGGY_ZEROPOINT))
