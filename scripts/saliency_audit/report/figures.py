"""Shared figure conventions: one look for every figure, written atomically."""

import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from saliency_audit.runtime.atomic_io import atomic_path  # noqa: E402

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
