"""Shared figure conventions: one look for every figure, written atomically."""

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from saliency_audit.runtime.atomic_io import atomic_path  # noqa: E402

LABEL_LIMIT = 40  # characters of a class label that a figure prints; longer ones end in an ellipsis
CLASS_COLOURS = ("#003f5c", "#ffa600", "#bc5090", "#58508d", "#ff6361", "#2f4b7c")
BAR_COLOUR = "#003f5c"

plt.rcParams.update(
    {
        "figure.dpi": 150,
        "savefig.dpi": 150,
        "font.size": 10,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "text.usetex": False,
        "text.parse_math": False,
    }
)


def save_figure(fig: plt.Figure, path: str | os.PathLike) -> None:
    """Save as PNG with a tight layout, then close the figure to free its memory."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)


def safe_name(index: int, label: str) -> str:
    """A file name for a class label from the catalog (any characters)."""
    return f"{index}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)[:40]}.png"


class FigureError(RuntimeError):
    """A figure could not be drawn; the message names what it shows (the column) and its file."""


def short_label(label: object, limit: int = LABEL_LIMIT) -> str:
    """A class label (any catalog value) as a figure prints it: on one line, at most ``limit`` characters,
    cut with an ellipsis. Only figures shorten labels; the tables keep them in full."""
    text = str(label)
    one_line = re.sub(r"\s+", " ", text[: limit + 1])  # only the head is looked at: labels can be huge
    return one_line if len(text) <= limit else one_line[: limit - 1] + "…"


@contextmanager
def drawing(what: str, path: str | os.PathLike) -> Iterator[None]:
    """Re-raise any failure while drawing and saving ``what`` as a FigureError that names it and ``path``."""
    try:
        yield
    except Exception as error:
        plt.close("all")
        raise FigureError(
            f"could not draw {what} ({path}): {type(error).__name__}: {short_label(error, 500)}"
        ) from error
