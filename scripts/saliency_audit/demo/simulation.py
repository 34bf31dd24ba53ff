"""The demo simulation (rule ``simulate_demo``): the embedded demo catalog, SDSS-like gri JPEG cutouts
and true object masks.

Galaxies are rendered in parallel; each has its own seed derived from the demo
seed and its index, so the data do not depend on the number of workers.
"""

from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from saliency_audit.demo.galaxy_model import GalaxyParams, draw_galaxies
from saliency_audit.demo.rendering import Shortcut, SkySettings, render_stamp, to_rgb
from saliency_audit.runtime.atomic_io import atomic_path
from saliency_audit.runtime.job import worker_defaults

OBJID_BASE = 1237648720693755918  # SDSS DR7 objIDs are 64-bit integers of this size


def shortcut_flags(
    metallicity: np.ndarray,
    bins: list[float],
    labels: list[str],
    shortcut: dict[str, Any],
    rng: np.random.Generator,
) -> np.ndarray:
    """Choose which galaxies get the planted star: ``fraction`` of class ``class``."""
    flags = np.zeros(len(metallicity), dtype=bool)
    if shortcut.get("kind", "none") == "none" or shortcut.get("fraction", 0.0) == 0.0:
        return flags
    if shortcut["class"] not in labels:
        raise ValueError(f"demo.shortcut.class {shortcut['class']!r} is not one of target.labels {labels}")
    classes = pd.cut(metallicity, bins=bins, labels=labels)
    members = np.flatnonzero(np.asarray(classes == shortcut["class"]))
    chosen = rng.choice(members, size=int(round(shortcut["fraction"] * len(members))), replace=False)
    flags[chosen] = True
    return flags


def object_ids(n: int, rng: np.random.Generator) -> list[str]:
    """Unique SDSS-like 64-bit ids, as strings (they do not survive a float64)."""
    steps = rng.integers(1, 1 << 20, n, dtype=np.int64)
    return [str(OBJID_BASE + int(v)) for v in np.cumsum(steps)]


def _render_one(task: tuple[str, GalaxyParams, int, bool, SkySettings, Path, Path, Path]) -> dict[str, Any]:
    """Worker: render one galaxy, write its JPEG, its twin's JPEG and its mask, return its catalog row."""
    obj_id, params, seed, planted, sky, image_dir, mask_dir, twin_dir = task
    stamp = render_stamp(params, seed, sky, Shortcut() if planted else None)
    with atomic_path(image_dir / f"{obj_id}.jpg") as tmp:
        Image.fromarray(to_rgb(stamp.bands)).save(tmp, quality=90)
    with atomic_path(twin_dir / f"{obj_id}.jpg") as tmp:
        Image.fromarray(to_rgb(stamp.twin)).save(tmp, quality=90)
    with atomic_path(mask_dir / f"{obj_id}.png") as tmp:
        Image.fromarray(stamp.mask.astype(np.uint8) * 255).save(tmp)
    x, y = stamp.star_xy if stamp.star_xy else (np.nan, np.nan)
    return {
        "petroR90_r": round(stamp.petro_r90, 3),
        "psf_fwhm": round(stamp.psf_fwhm, 3),
        "n_neighbours": stamp.n_neighbours,
        "n_field_stars": stamp.n_stars,
        "shortcut_x": x,
        "shortcut_y": y,
    }


def simulate(
    demo: dict[str, Any],
    target: dict[str, Any],
    image_dir: Path,
    mask_dir: Path,
    twin_dir: Path,
    workers: int,
) -> pd.DataFrame:
    """Render the demo galaxies into ``image_dir``/``mask_dir`` and return the catalog.

    ``twin_dir`` receives each galaxy's twin under the same file name: the same
    cutout and noise with only the central galaxy (no planted star, neighbours
    or field stars).
    """
    seeds = np.random.SeedSequence(demo["seed"])
    param_seed, id_seed, sky_seed, shortcut_seed, stamp_seed = seeds.spawn(5)
    n = demo["n_galaxies"]
    galaxies = draw_galaxies(
        n,
        np.random.default_rng(param_seed),
        tuple(demo["log_mass"]),
        tuple(demo["redshift"]),
        demo["metallicity_scatter"],
        demo.get("mag_limit"),
    )
    metallicity = np.array([g.metallicity for g in galaxies])
    planted = shortcut_flags(
        metallicity, target["bins"], target["labels"], demo["shortcut"], np.random.default_rng(shortcut_seed)
    )
    ids = object_ids(n, np.random.default_rng(id_seed))
    stamp_seeds = [int(s.generate_state(1)[0]) for s in stamp_seed.spawn(n)]
    sky = SkySettings(stamp_size=demo["stamp_size"], pixel_scale=demo["pixel_scale"])
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    twin_dir.mkdir(parents=True, exist_ok=True)
    tasks = [
        (ids[i], galaxies[i], stamp_seeds[i], bool(planted[i]), sky, image_dir, mask_dir, twin_dir) for i in range(n)
    ]
    progress = dict(total=n, desc="render", unit="galaxy", mininterval=2.0)
    if workers > 1:
        with Pool(workers, initializer=worker_defaults) as pool:
            rows = list(tqdm(pool.imap(_render_one, tasks, chunksize=8), **progress))
    else:
        rows = [_render_one(task) for task in tqdm(tasks, **progress)]

    coords = np.random.default_rng(sky_seed).uniform([140.0, 0.0], [220.0, 50.0], (n, 2))
    catalog = pd.DataFrame(
        {
            "objID": ids,
            "ra": coords[:, 0].round(6),
            "dec": coords[:, 1].round(6),
            "z": [round(g.redshift, 5) for g in galaxies],
            "log_mass": [round(g.log_mass, 4) for g in galaxies],
            "metallicity": metallicity.round(4),
            "mag_r": [round(g.mag_r, 3) for g in galaxies],
            "bulge_fraction": [round(g.bulge_fraction, 4) for g in galaxies],
            "disk_hlr": [round(g.disk_hlr, 3) for g in galaxies],
            "bulge_hlr": [round(g.bulge_hlr, 3) for g in galaxies],
            "axis_ratio": [round(g.axis_ratio, 4) for g in galaxies],
            "position_angle": [round(g.position_angle, 2) for g in galaxies],
        }
    )
    catalog = pd.concat([catalog, pd.DataFrame(rows)], axis=1)
    catalog.insert(len(catalog.columns), "shortcut", planted.astype(int))
    return catalog


def class_counts(catalog: pd.DataFrame, target: dict[str, Any]) -> dict[str, int]:
    """Galaxies per metallicity class (largest first), for the job's log."""
    return pd.cut(catalog["metallicity"], bins=target["bins"], labels=target["labels"]).value_counts().to_dict()
