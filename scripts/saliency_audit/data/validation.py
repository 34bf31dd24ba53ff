"""Catalog validation (rule ``validate_catalog``): check every row of the catalog and every image before
anything uses them.

The catalog is read once, as text (``catalog_csv``): a malformed line is a
``malformed_row`` problem, and only the columns the config uses are converted, per
row, by the one number rule (``number_text``). Problems become rows of an integrity
table (row, id, problem, detail) and their rows are excluded; the run goes on with
the good rows. Warnings (``WARNINGS``: an object that the centre crop cuts, an
image that packs (nearly) constant) are rows of the same table, but their rows are
kept. Only problems that make the whole catalog unusable (a missing column, a
missing image folder, no usable row at all) stop the run, with a message that
says what to fix.
"""

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from saliency_audit.data.catalog_csv import (
    CatalogReadError,
    CatalogText,
    missing_column_message,
    read_catalog_text,
)
from saliency_audit.data.image_io import (
    BAND,
    Decoding,
    ImageProblem,
    center_crop_pad,
    crop_window,
    decode_image,
    image_path,
    nearly_constant,
)
from saliency_audit.data.number_text import is_blank, is_number, parse_numbers
from saliency_audit.data.regions import threshold_regions

INTEGRITY_COLUMNS = ["row", "id", "problem", "detail"]
WARNINGS = frozenset({"object_cut", "constant_image", "non_finite_pixels"})  # reported, but the row is kept
CUT_WARNING = 0.05  # share of the object's pixels outside the crop above which object_cut is reported
MAX_NAME_BYTES = 255  # the longest file name Linux and macOS file systems allow
SIZE_COLUMNS = ("image_width", "image_height")  # the original size of every image, for the saliency stage
OWN_COLUMNS = ("id", "image", *SIZE_COLUMNS)  # a catalog column of one of these names becomes catalog_<name>


class CatalogError(ValueError):
    """The catalog as a whole cannot be used; the message says why and what to change."""


def read_catalog(path: str | os.PathLike, delimiter: str | None = None) -> CatalogText:
    """The catalog as text, read once; ids are the exact text of the file (64-bit objIDs do not
    survive a float64), and only an empty cell is missing ("NA" or "nan" is a name)."""
    try:
        return read_catalog_text(path, delimiter)
    except CatalogReadError as error:
        raise CatalogError(str(error)) from None


def require_column(frame: pd.DataFrame, column: str, key: str, delimiter: str | None = None) -> None:
    """Fail with the config key, the columns that exist and the closest match."""
    if column not in frame.columns:
        raise CatalogError(missing_column_message(column, key, [str(c) for c in frame.columns], delimiter))


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
        elif len(text.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            problems.append((position, "unsafe_id", f"{text[:40]!r}... is longer than a file name may be "
                             f"({MAX_NAME_BYTES} bytes)"))  # fmt: skip
        elif text in first_seen:
            problems.append((position, "duplicate_id", f"same id as row {first_seen[text] + 1}"))
        else:
            first_seen[text] = position
    return problems


def target_problems(values: pd.Series, numeric: bool, invalid: list[float]) -> list[tuple[int, str, str]]:
    """Empty, non-numeric, non-finite and sentinel target values (numbers by ``number_text``'s rule)."""
    empty = is_blank(values)
    problems = [(position, "missing_target", "the target is empty") for position in np.flatnonzero(empty)]
    if numeric:
        numbers = parse_numbers(values).to_numpy()
        spelled = is_number(values)
        for position in np.flatnonzero(~empty & ~spelled):
            problems.append((position, "non_numeric_target", f"{values.iloc[position]!r} is not a number "
                             "(plain ASCII digits, e.g. 8.7 or -1.5e3)"))  # fmt: skip
        for position in np.flatnonzero(spelled & ~np.isfinite(numbers)):
            problems.append((position, "non_finite_target", f"{values.iloc[position]!r} is not finite"))
        sentinel = spelled & np.isin(numbers, np.asarray(invalid, dtype=float))
        for position in np.flatnonzero(sentinel):
            problems.append((position, "invalid_target", f"{values.iloc[position]!r} is listed in target.invalid"))
    return [(int(p), kind, detail) for p, kind, detail in sorted(problems)]


def require_truth_numbers(values: pd.Series, column: str, rows: np.ndarray) -> None:
    """The truth column scores the audit: text in it would silently count as clean images."""
    bad = np.flatnonzero(~is_blank(values) & ~is_number(values))
    if len(bad):
        raise CatalogError(
            f"config key saliency.truth_column: column {column!r} must hold numbers (1 for an image with the "
            f"shortcut, 0 or empty for a clean one); row {rows[bad[0]]} holds {values.iloc[bad[0]]!r}"
        )


def cut_fraction(image: np.ndarray, size: int, nsigma: float) -> float:
    """Share of the object's pixels (brightness threshold, as saliency.object.method threshold with the
    configured ``nsigma``) that fall outside the central ``size`` x ``size`` crop; 0 when the image fits."""
    height, width = image.shape[:2]
    if height <= size and width <= size:
        return 0.0
    mask = threshold_regions(image[None], nsigma)[0]
    total = int(mask.sum())
    if total == 0:
        return 0.0
    return 1.0 - int(center_crop_pad(mask, size).sum()) / total


def image_problems(
    paths: dict[int, str],
    max_pixels: int,
    size: int,
    nsigma: float,
    workers: int,
    chunk: int = 1024,
    decoding: Decoding | None = None,
) -> tuple[list[tuple[int, str, str]], dict[int, tuple[int, int]]]:
    """Decode every image once (in threads: PIL and numpy release the GIL), as packing will (``decoding``);
    warn when the centre crop to ``size`` would cut the object or leaves (nearly) constant pixels, and
    when non-finite pixels were filled. Returns the problems and the (width, height) of every image
    that decoded."""

    def check(item: tuple[int, str]) -> tuple[int, list[tuple[int, str, str]], tuple[int, int] | None]:
        position, path = item
        try:
            image, non_finite = decode_image(path, max_pixels, decoding)
        except ImageProblem as problem:
            return position, [(position, problem.problem, problem.detail)], None
        height, width = image.shape[:2]
        found = []
        if non_finite:
            found.append((position, "non_finite_pixels", f"{path}: {non_finite} of {image.shape[0] * image.shape[1]} "
                          "pixels are NaN or infinite; they take their band's median (row kept)"))  # fmt: skip
        cut = cut_fraction(image, size, nsigma)
        if cut > CUT_WARNING:
            found.append((position, "object_cut", f"{path} is {width}x{height}; the central {size}x{size} crop "
                          f"(image.size) cuts {cut:.0%} of the object's pixels (row kept)"))  # fmt: skip
        if nearly_constant(image[crop_window(height, width, size)[0]]):
            found.append((position, "constant_image", f"{path}: the packed pixels are (nearly) constant, the model "
                          "sees no structure (blank, saturated or black after conversion; row kept)"))  # fmt: skip
        return position, found, (width, height)

    items, problems, sizes = list(paths.items()), [], {}
    with (
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        tqdm(total=len(items), desc="decode", unit="image", mininterval=2.0) as progress,
    ):
        for start in range(0, len(items), chunk):  # a chunk of futures at a time: memory stays flat
            batch = items[start : start + chunk]
            for position, found, shape in pool.map(check, batch):
                problems += found
                if shape is not None:
                    sizes[position] = shape
            progress.update(len(batch))
    return problems, sizes


def validate(
    catalog: CatalogText | pd.DataFrame,
    id_column: str,
    images: str,
    target_column: str,
    numeric_target: bool,
    invalid: list[float],
    max_pixels: int,
    size: int,
    nsigma: float,
    workers: int = 1,
    numeric_columns: dict[str, str] | None = None,
    decoding: Decoding | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (clean catalog with ``id``, ``image``, ``image_width`` and ``image_height`` columns,
    integrity table).

    ``numeric_columns`` maps the other columns the config reads as numbers (truth, region)
    to their config key: they must exist, and are converted per row by the number rule.
    """
    text = catalog if isinstance(catalog, CatalogText) else CatalogText(catalog.astype("string"),
                                                                         list(range(1, len(catalog) + 1)))  # fmt: skip
    frame, delimiter = text.frame, text.delimiter if isinstance(catalog, CatalogText) else None
    numeric_columns = numeric_columns or {}
    for column, key in {id_column: "id_column", target_column: "target.column", **numeric_columns}.items():
        require_column(frame, column, key, delimiter)
    for column, key in numeric_columns.items():
        if key == "saliency.truth_column":
            require_truth_numbers(frame[column], column, np.asarray(text.rows))
    for band in decoding.bands if decoding is not None and BAND in images else ("",):
        folder = image_folder(images.replace(BAND, band))
        if folder is not None and not folder.is_dir():
            raise CatalogError(f"config key images: the image folder {folder} does not exist (pattern {images!r})")

    ids = frame[id_column].astype("string").str.strip()
    problems = id_problems(ids) + target_problems(frame[target_column], numeric_target, invalid)
    bad_id = {position for position, problem, _ in problems if problem in ("missing_id", "unsafe_id")}
    paths = {k: image_path(images, ids.iloc[k]) for k in range(len(frame)) if k not in bad_id}
    found, sizes = image_problems(paths, max_pixels, size, nsigma, workers, decoding=decoding)
    problems += found

    rows = np.asarray(text.rows, dtype=np.int64)
    integrity = pd.DataFrame(
        [(rows[position], ids.iloc[position], p, d) for position, p, d in problems]
        + [(row, pd.NA, "malformed_row", detail) for row, detail in text.malformed],
        columns=INTEGRITY_COLUMNS,
    )
    integrity = integrity.sort_values(["row", "problem"], kind="stable").reset_index(drop=True)
    excluded = {position for position, problem, _ in problems if problem not in WARNINGS}
    keep = np.array([position not in excluded for position in range(len(frame))], dtype=bool)
    # the clean table's own columns replace the id column of that name, and push any other
    # catalog column of that name to catalog_<name>
    clean = frame.loc[keep].drop(columns=[id_column] if id_column in OWN_COLUMNS else [])
    clean = clean.rename(columns={c: f"catalog_{c}" for c in OWN_COLUMNS if c in clean.columns})
    kept = np.flatnonzero(keep)
    clean.insert(0, "id", ids[keep].astype(str).to_numpy())
    clean.insert(1, "image", [paths[int(position)] for position in kept])
    for k, name in enumerate(SIZE_COLUMNS):
        clean.insert(2 + k, name, np.array([sizes[int(position)][k] for position in kept], dtype=np.int64))
    for column in ([target_column] if numeric_target else []) + list(numeric_columns):
        if column in clean.columns:
            clean[column] = parse_numbers(clean[column])
    if clean.empty:
        counts = integrity["problem"].value_counts().to_dict()
        hint = ""
        if counts.get("non_numeric_target", 0) == len(frame):
            hint = (
                f". target.bins is set, so target.column {target_column!r} must be numeric; for a categorical "
                "target leave out target.bins (use --replace-workflow-config so the demo's bins are not inherited)"
            )
        n_rows = text.n_rows or len(frame)
        raise CatalogError(f"no usable row left in the catalog ({n_rows} rows); problems found: {counts}{hint}")
    return clean.reset_index(drop=True), integrity


def numeric_columns(config_target: dict[str, Any], truth_column: str | None, region: dict[str, Any]) -> dict[str, str]:
    """The catalog columns (other than the target) that the config reads as numbers, with their keys."""
    columns = {}
    if truth_column:
        columns[truth_column] = "saliency.truth_column"
    if region.get("method") == "circle":
        columns[region["radius_column"]] = "saliency.object.radius_column"
    if region.get("method") == "ellipse":
        for name, column in region["columns"].items():
            columns[column] = f"saliency.object.columns.{name}"
    return {c: k for c, k in columns.items() if c != config_target["column"]}


def source_metadata(catalog: CatalogText) -> dict[str, str]:
    """The clean table's schema metadata: which catalog file (hash, rows, delimiter) it came from,
    for the provenance page."""
    source = {"catalog_sha256": catalog.sha256, "catalog_rows": catalog.n_rows, "delimiter": catalog.delimiter}
    return {"saliency_audit": json.dumps(source)}


def problem_counts(integrity: pd.DataFrame) -> dict[str, int]:
    """How often each problem or warning occurs, the most frequent first, for the job's log."""
    return {str(problem): int(count) for problem, count in integrity["problem"].value_counts().items()}
