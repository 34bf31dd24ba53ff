import galsim
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from saliency_audit.demo.galaxy_model import draw_galaxies, mass_metallicity
from saliency_audit.demo.rendering import STAR_COLOURS, Shortcut, SkySettings, _draw, render_stamp, to_rgb
from saliency_audit.demo.simulation import object_ids, shortcut_flags, simulate

BINS, LABELS = [8.1, 8.7, 9.1, 9.3], ["low", "medium", "high"]


def test_mass_metallicity_rises_and_flattens() -> None:
    z = mass_metallicity(np.linspace(8.5, 11.1, 27))
    steps = np.diff(z)
    assert (steps > 0).all() and steps[0] > 5 * steps[-1]
    assert 8.2 < z[0] < 8.4 and 9.15 < z[-1] < 9.25


def test_mass_drives_size_bulge_and_colour() -> None:
    galaxies = draw_galaxies(2000, np.random.default_rng(0), (8.5, 11.1), (0.03, 0.12), 0.08)
    frame = pd.DataFrame([g.__dict__ for g in galaxies])
    correlations = frame.corr()["log_mass"]
    assert correlations["metallicity"] > 0.9
    # strong but imperfect: the class is read from an image only approximately
    assert 0.6 < correlations["bulge_fraction"] < 0.9 and 0.3 < correlations["disk_hlr"] < 0.8
    assert -0.9 < correlations["disk_blueness"] < -0.6 and -0.9 < correlations["mag_r"] < -0.6
    assert abs(correlations["redshift"]) < 0.1


def test_flux_limit_puts_dwarfs_nearby() -> None:
    galaxies = draw_galaxies(2000, np.random.default_rng(0), (8.5, 11.1), (0.01, 0.12), 0.08, mag_limit=17.77)
    frame = pd.DataFrame([g.__dict__ for g in galaxies])
    assert frame["mag_r"].max() < 17.78 and frame["redshift"].between(0.01, 0.12).all()
    dwarfs, giants = frame[frame["log_mass"] < 9.0], frame[frame["log_mass"] > 10.5]
    assert dwarfs["redshift"].median() < 0.04 < 0.07 < giants["redshift"].median()
    # nearby dwarfs look about as large as distant giants, so a class is not just a size
    assert 0.5 < dwarfs["disk_hlr"].median() / giants["disk_hlr"].median() < 2.0
    assert frame.corr()["log_mass"]["redshift"] > 0.5


def test_shortcut_flags_pick_the_fraction_of_one_class() -> None:
    metallicity = np.random.default_rng(1).uniform(8.2, 9.3, 1000)
    flags = shortcut_flags(
        metallicity, BINS, LABELS, {"kind": "star", "class": "high", "fraction": 0.3}, np.random.default_rng(2)
    )
    high = np.asarray(pd.cut(metallicity, BINS, labels=LABELS) == "high")
    assert flags[high].sum() == round(0.3 * high.sum()) and not flags[~high].any()
    assert not shortcut_flags(metallicity, BINS, LABELS, {"kind": "none"}, np.random.default_rng(2)).any()
    with pytest.raises(ValueError, match="demo.shortcut.class"):
        shortcut_flags(
            metallicity, BINS, LABELS, {"kind": "star", "class": "top", "fraction": 0.3}, np.random.default_rng(2)
        )


def test_object_ids_are_unique_64_bit_integers_as_text() -> None:
    ids = object_ids(5000, np.random.default_rng(0))
    assert len(set(ids)) == 5000 and all(int(i) > 2**60 and int(i) < 2**63 for i in ids)


@pytest.fixture(scope="module")
def galaxy():
    return draw_galaxies(1, np.random.default_rng(3), (10.0, 10.0), (0.05, 0.05), 0.0)[0]


def test_stamp_is_deterministic_and_centred(galaxy) -> None:
    sky = SkySettings(neighbours_per_stamp=0.0, stars_per_stamp=0.0)
    first, again = render_stamp(galaxy, 11, sky, None), render_stamp(galaxy, 11, sky, None)
    for band in "gri":
        np.testing.assert_array_equal(first.bands[band], again.bands[band])
    assert first.mask[31:33, 31:33].all() and not first.mask[0, 0]
    rows, cols = np.nonzero(first.mask)
    assert abs(rows.mean() - 31.5) < 1.5 and abs(cols.mean() - 31.5) < 1.5
    flux = {b: first.bands[b][first.mask].sum() for b in "gri"}
    assert flux["g"] < flux["r"] < flux["i"]  # a 10^10 Msun galaxy is red in g-r and r-i
    assert 1.0 < first.petro_r90 < 12.0


def test_shortcut_star_is_bright_and_off_the_galaxy(galaxy) -> None:
    sky = SkySettings(neighbours_per_stamp=0.0, stars_per_stamp=0.0)
    stamp = render_stamp(galaxy, 11, sky, Shortcut())
    x, y = (int(round(v)) for v in stamp.star_xy)
    assert not stamp.mask[max(y - 3, 0) : y + 4, max(x - 3, 0) : x + 4].any()
    plain = render_stamp(galaxy, 11, sky, None)
    added = stamp.bands["r"] - plain.bands["r"]
    assert np.unravel_index(np.argmax(added), added.shape) == pytest.approx((y, x), abs=1)
    rgb = to_rgb(stamp.bands)
    assert rgb.dtype == np.uint8 and rgb[y, x].min() > 200  # saturates like a bright star in SDSS


def test_shortcut_star_stays_off_a_galaxy_that_fills_most_of_the_stamp() -> None:
    sky = SkySettings(neighbours_per_stamp=0.0, stars_per_stamp=0.0)
    checked = 0
    for seed in range(12):
        big = draw_galaxies(1, np.random.default_rng(seed), (11.1, 11.1), (0.05, 0.05), 0.0)[0]
        stamp = render_stamp(big, seed, sky, Shortcut())
        if stamp.mask.mean() < 0.4 or stamp.mask[4:-4, 4:-4].all():
            continue  # small galaxy, or no free pixel at all
        x, y = (int(round(v)) for v in stamp.star_xy)
        assert 3 <= x <= 60 and 3 <= y <= 60
        assert not stamp.mask[y, x]
        checked += 1
    assert checked >= 3


def _unit_star(stamp, sky: SkySettings) -> np.ndarray:
    """Noiseless unit-flux image of the planted star, rows top to bottom like the stamp."""
    centre = (sky.stamp_size - 1) / 2
    x, y = stamp.star_xy
    star = galsim.DeltaFunction().shift((x - centre) * sky.pixel_scale, (centre - y) * sky.pixel_scale)
    psf = galsim.Kolmogorov(fwhm=stamp.psf_fwhm)
    return _draw([(star, {b: 1.0 for b in "gri"})], psf, sky.stamp_size, sky.pixel_scale)["r"][::-1]


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_twin_of_a_shortcut_stamp_lacks_only_the_star(galaxy, seed) -> None:
    sky = SkySettings(neighbours_per_stamp=0.0, stars_per_stamp=0.0)
    stamp = render_stamp(galaxy, seed, sky, Shortcut())
    assert stamp.n_neighbours == stamp.n_stars == 0
    x, y = stamp.star_xy
    rows, cols = np.indices(stamp.mask.shape)
    near = np.hypot(cols - x, rows - y) <= 10
    unit = _unit_star(stamp, sky)
    fluxes = {}
    for band in "gri":
        assert stamp.twin[band].dtype == np.float32 and stamp.twin[band].shape == stamp.bands[band].shape
        added = stamp.bands[band].astype(np.float64) - stamp.twin[band]
        assert np.unravel_index(np.argmax(added), added.shape) == pytest.approx((y, x), abs=1)
        # the very same noise: what the twin lacks is the noiseless star and nothing else
        fluxes[band] = float((added * unit).sum() / (unit * unit).sum())
        np.testing.assert_allclose(added, fluxes[band] * unit, rtol=1e-4, atol=1e-6)
        assert added.min() > 0 and added[near].max() > 300  # thousands of sky sigmas at the star
        assert added[~near].max() < 0.01 * added.max()  # beyond 10 px only the PSF's faint wings
    for band in "gi":
        assert fluxes[band] / fluxes["r"] == pytest.approx(10 ** (-0.4 * STAR_COLOURS[band]), rel=1e-5)


def test_twin_equals_the_image_when_there_is_nothing_off_the_galaxy(galaxy) -> None:
    empty = SkySettings(neighbours_per_stamp=0.0, stars_per_stamp=0.0)
    for sky, seed in ((empty, 11), (SkySettings(), 0), (SkySettings(), 6)):
        stamp = render_stamp(galaxy, seed, sky, None)
        assert stamp.n_neighbours == stamp.n_stars == 0 and stamp.star_xy is None
        for band in "gri":
            np.testing.assert_array_equal(stamp.twin[band], stamp.bands[band])
            assert stamp.twin[band].dtype == np.float32


def test_twin_leaves_the_image_as_it_was(galaxy) -> None:
    """The twin takes no random numbers: a crowded stamp keeps the values it had before twins existed."""
    stamp = render_stamp(galaxy, 13, SkySettings(), Shortcut())
    assert (stamp.n_neighbours, stamp.n_stars) == (2, 1)
    assert stamp.star_xy == pytest.approx((7.467295277791582, 5.382663426156679), abs=1e-9)
    expected = {  # corner pixels (sky noise) and total flux of each band
        "g": (1.1510357856750488, 0.052064500749111176, -0.011733920313417912, 12313.093722129304),
        "r": (1.884544014930725, 0.024975057691335678, -0.06251033395528793, 20400.693593888092),
        "i": (2.2188141345977783, -0.10466104000806808, -0.04072127491235733, 24120.10246311558),
    }
    for band, (top_left, bottom_right, top_right, total) in expected.items():
        image = stamp.bands[band]
        assert image[0, 0] == pytest.approx(top_left, abs=1e-5)
        assert image[63, 63] == pytest.approx(bottom_right, abs=1e-5)
        assert image[0, 63] == pytest.approx(top_right, abs=1e-5)
        assert image.astype(np.float64).sum() == pytest.approx(total, rel=1e-6)
        # every extra source adds light; a different noise would make this fall below zero somewhere
        assert (image.astype(np.float64) - stamp.twin[band]).min() > 0


def test_simulate_writes_one_twin_per_image(tmp_path) -> None:
    demo = {
        "seed": 7,
        "n_galaxies": 8,
        "stamp_size": 64,
        "pixel_scale": 0.396,
        "log_mass": [8.5, 11.1],
        "redshift": [0.01, 0.12],
        "mag_limit": 17.77,
        "metallicity_scatter": 0.08,
        "shortcut": {"kind": "star", "class": "high", "fraction": 1.0},
    }
    dirs = {name: tmp_path / name for name in ("images", "masks", "twins")}
    catalog = simulate(demo, {"bins": BINS, "labels": LABELS}, dirs["images"], dirs["masks"], dirs["twins"], 1)
    names = sorted(path.name for path in dirs["images"].iterdir())
    assert len(names) == len(catalog) == 8
    assert (
        sorted(path.name for path in dirs["twins"].iterdir()) == names == sorted(f"{i}.jpg" for i in catalog["objID"])
    )
    bare = (catalog["shortcut"] == 0) & (catalog["n_neighbours"] == 0) & (catalog["n_field_stars"] == 0)
    assert bare.any() and catalog["shortcut"].any()
    for _, row in catalog.iterrows():
        image = np.asarray(Image.open(dirs["images"] / f"{row['objID']}.jpg"))
        twin = np.asarray(Image.open(dirs["twins"] / f"{row['objID']}.jpg"))
        assert twin.shape == image.shape == (64, 64, 3)
        if row["shortcut"] == 1:
            x, y = int(round(row["shortcut_x"])), int(round(row["shortcut_y"]))
            assert image[y, x].min() > 200 and twin[y, x].max() < 100  # the star is in the image only
        elif bare[row.name]:
            np.testing.assert_array_equal(twin, image)
