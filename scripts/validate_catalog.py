"""validate_catalog: check every row of the catalog and every image before anything uses them.

Problems become rows of an integrity table (id, problem, detail) and their rows
are excluded; the run goes on with the good rows. Warnings (``WARNINGS``, e.g. an
object that the centre crop cuts) are rows of the same table, but their rows are
kept. Only problems that make the whole catalog unusable (a missing column, a
missing image folder, no usable row at all) stop the run, with a message that
says what to fix.
"""

import difflib
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from atomic_io import write_csv, write_parquet
from image_io import ImageProblem, center_crop_pad, load_rgb
from job import start_job
from regions import threshold_regions

INTEGRITY_COLUMNS = ["row", "id", "problem", "detail"]
WARNINGS = frozenset({"object_cut"})  # reported, but the row is kept
CUT_WARNING = 0.05  # share of the object's pixels outside the crop above which object_cut is reported


class CatalogError(ValueError):
    """The catalog as a whole cannot be used; the message says why and what to change."""


def read_catalog(path: str | os.PathLike, id_column: str) -> pd.DataFrame:
    """Read the CSV with ids as the exact text of the file: 64-bit objIDs do not survive a float64,
    and an id such as "NA" or "nan" is a name, not a missing value (only an empty cell is)."""
    try:
        header = pd.read_csv(path, nrows=0).columns
    except (FileNotFoundError, pd.errors.EmptyDataError) as error:
        raise CatalogError(f"catalog {path}: {error}") from None
    if id_column not in header:
        return pd.read_csv(path, engine="pyarrow")
    catalog = pd.read_csv(path, engine="pyarrow", dtype={id_column: "string"})
    ids = pd.read_csv(path, engine="pyarrow", usecols=[id_column], dtype="string", keep_default_na=False)
    catalog[id_column] = ids[id_column].replace("", pd.NA)
    return catalog


def require_column(frame: pd.DataFrame, column: str, key: str) -> None:
    """Fail with the config key, the columns that exist and the closest match."""
    if column in frame.columns:
        return
    columns = [str(c) for c in frame.columns]
    close = difflib.get_close_matches(column, columns, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise CatalogError(
        f"config key {key}: column {column!r} is not in the catalog. Columns present: {', '.join(columns)}{hint}"
    )


def image_folder(pattern: str) -> Path | None:
    """The folder of the image pattern when it does not depend on the id."""
    parent = Path(pattern).parent
    return None if "{id}" in str(parent) else parent


def id_problems(ids: pd.Series) -> list[tuple[int, str, str]]:
    """Missing, unsafe (path-like) and duplicate ids; the first of duplicates is kept.

    ``ids`` are already stripped of surrounding whitespace; any other character,
    unicode included, is part of the id and of its file name.
    """
    problems = []
    first_seen: dict[str, int] = {}
    for position, value in enumerate(ids):
        if pd.isna(value) or str(value).strip() == "":
            problems.append((position, "missing_id", "the id is empty"))
            continue
        text = str(value)
        if any(sep in text for sep in ("/", "\\", "\x00")) or text in (".", ".."):
            problems.append((position, "unsafe_id", f"{text!r} is not a plain file name"))
        elif text in first_seen:
            problems.append((position, "duplicate_id", f"same id as row {first_seen[text] + 1}"))
        else:
            first_seen[text] = position
    return problems


def target_problems(values: pd.Series, numeric: bool, invalid: list[float]) -> list[tuple[int, str, str]]:
    """Empty, non-numeric, non-finite and sentinel target values."""
    problems = []
    for position, value in enumerate(values):
        if pd.isna(value) or str(value).strip() == "":
            problems.append((position, "missing_target", "the target is empty"))
        elif numeric:
            try:
                number = float(value)
            except (TypeError, ValueError):
                problems.append((position, "non_numeric_target", f"{value!r} is not a number"))
                continue
            if not math.isfinite(number):
                problems.append((position, "non_finite_target", f"{value!r} is not finite"))
            elif number in invalid:
                problems.append((position, "invalid_target", f"{value!r} is listed in target.invalid"))
    return problems


def cut_fraction(image: np.ndarray, size: int) -> float:
    """Share of the object's pixels (brightness threshold, as saliency.object.method threshold)
    that fall outside the central ``size`` x ``size`` crop; 0 when the image fits."""
    height, width = image.shape[:2]
    if height <= size and width <= size:
        return 0.0
    mask = threshold_regions(image[None])[0]
    total = int(mask.sum())
    if total == 0:
        return 0.0
    return 1.0 - int(center_crop_pad(mask, size).sum()) / total


def image_problems(
    paths: dict[int, str], max_pixels: int, size: int, workers: int, chunk: int = 1024
) -> list[tuple[int, str, str]]:
    """Decode every image once (in threads: PIL and numpy release the GIL), and warn when the
    centre crop to ``size`` would cut the object."""

    def check(item: tuple[int, str]) -> tuple[int, str, str] | None:
        position, path = item
        try:
            image = load_rgb(path, max_pixels)
        except ImageProblem as problem:
            return position, problem.problem, problem.detail
        cut = cut_fraction(image, size)
        if cut > CUT_WARNING:
            height, width = image.shape[:2]
            return (
                position,
                "object_cut",
                (
                    f"{path} is {width}x{height}; the central {size}x{size} crop (image.size) cuts {cut:.0%} of the "
                    "object's pixels (row kept)"
                ),
            )
        return None

    items, problems = list(paths.items()), []
    with (
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        tqdm(total=len(items), desc="decode", unit="image", mininterval=2.0) as progress,
    ):
        for start in range(0, len(items), chunk):  # a chunk of futures at a time: memory stays flat
            batch = items[start : start + chunk]
            problems += [r for r in pool.map(check, batch) if r is not None]
            progress.update(len(batch))
    return problems


def validate(
    catalog: pd.DataFrame,
    id_column: str,
    images: str,
    target_column: str,
    numeric_target: bool,
    invalid: list[float],
    max_pixels: int,
    size: int,
    workers: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (clean catalog with ``id`` and ``image`` columns, integrity table)."""
    require_column(catalog, id_column, "id_column")
    require_column(catalog, target_column, "target.column")
    folder = image_folder(images)
    if folder is not None and not folder.is_dir():
        raise CatalogError(f"config key images: the image folder {folder} does not exist (pattern {images!r})")

    ids = catalog[id_column].astype("string").str.strip()
    problems = id_problems(ids) + target_problems(catalog[target_column], numeric_target, invalid)
    bad_id = {position for position, problem, _ in problems if problem in ("missing_id", "unsafe_id")}
    paths = {
        position: images.format(id=ids.iloc[position]) for position in range(len(catalog)) if position not in bad_id
    }
    problems += image_problems(paths, max_pixels, size, workers)

    integrity = pd.DataFrame(
        [(position + 1, ids.iloc[position], p, d) for position, p, d in sorted(problems)],
        columns=INTEGRITY_COLUMNS,
    )
    excluded = {position for position, problem, _ in problems if problem not in WARNINGS}
    keep = np.array([position not in excluded for position in range(len(catalog))], dtype=bool)
    # "id" and "image" are the clean table's own columns: the catalog's column of that name is
    # replaced when it is the id column, kept as "catalog_<name>" otherwise
    clean = catalog.loc[keep].drop(columns=[id_column] if id_column in ("id", "image") else [])
    clean = clean.rename(columns={c: f"catalog_{c}" for c in ("id", "image") if c in clean.columns})
    clean.insert(0, "id", ids[keep].astype(str))
    clean.insert(1, "image", [paths[position] for position in np.flatnonzero(keep)])
    if numeric_target:
        clean[target_column] = pd.to_numeric(clean[target_column])
    if clean.empty:
        counts = integrity["problem"].value_counts().to_dict()
        hint = ""
        if counts.get("non_numeric_target", 0) == len(catalog):
            hint = (
                f". target.bins is set, so target.column {target_column!r} must be numeric; for a categorical "
                "target leave out target.bins (use --replace-workflow-config so the demo's bins are not inherited)"
            )
        raise CatalogError(f"no usable row left in the catalog ({len(catalog)} rows); problems found: {counts}{hint}")
    return clean.reset_index(drop=True), integrity


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    p = snakemake.params
    catalog = read_catalog(snakemake.input.catalog, p.id_column)
    clean, integrity = validate(
        catalog,
        id_column=p.id_column,
        images=p.images,
        target_column=p.target["column"],
        numeric_target="bins" in p.target,
        invalid=p.target.get("invalid", []),
        max_pixels=p.max_pixels,
        size=p.size,
        workers=snakemake.threads,
    )
    write_csv(integrity, snakemake.output.integrity)
    write_parquet(clean, snakemake.output.clean)
    print(f"{len(clean)} of {len(catalog)} rows usable; {len(integrity)} problems and warnings", file=sys.stderr)
    for problem, count in integrity["problem"].value_counts().items():
        print(f"  {problem}: {count}", file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
