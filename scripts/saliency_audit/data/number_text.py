"""The one rule for what a number is in a catalog cell, in a filter expression or anywhere else text
becomes a number.

A number is an optional sign, ASCII decimal digits with an optional point and exponent
(``8.7``, ``-1e-3``, ``.5``), or ``nan`` / ``inf`` / ``infinity`` in any case, with surrounding
whitespace ignored. Python's ``float()`` also accepts ``1_000`` and full-width or other
non-ASCII digits, and pandas accepts other spellings still; neither is a number here, so a
cell means the same thing in every stage and a row is judged by its own text only.
"""

import re

import numpy as np
import pandas as pd

NUMBER_PATTERN = (
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"|[nN][aA][nN]|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?)"
)
_NUMBER = re.compile(NUMBER_PATTERN)


def parse_number(text: str) -> float | None:
    """The number ``text`` spells, or None."""
    stripped = text.strip()
    return float(stripped) if _NUMBER.fullmatch(stripped) else None


def is_blank(values: pd.Series) -> np.ndarray:
    """Per cell: is it missing, or only whitespace."""
    text = values.astype("string").str.strip()
    return text.isna().to_numpy() | (text == "").fillna(True).to_numpy(dtype=bool)


def is_number(values: pd.Series) -> np.ndarray:
    """Per cell: does its text spell a number (empty and missing cells do not)."""
    text = values.astype("string").str.strip()
    return text.str.fullmatch(NUMBER_PATTERN).fillna(False).to_numpy(dtype=bool)


def parse_numbers(values: pd.Series) -> pd.Series:
    """float64 values of the cells that spell a number, NaN for every other cell.

    Cells that are already numbers (a float column) are kept as they are.
    """
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype("float64")
    text = values.astype("string").str.strip()
    ok = text.str.fullmatch(NUMBER_PATTERN).fillna(False).to_numpy(dtype=bool)
    out = np.full(len(values), np.nan)
    out[ok] = np.array(text[ok].tolist(), dtype=np.float64)  # ASCII only: float() reads them all exactly
    return pd.Series(out, index=values.index, name=values.name)
