"""The backgrounds figure (rule ``backgrounds``): accuracy per true class under the Backgrounds Challenge's views.

The numbers come from ``saliency_audit.saliency.backgrounds``; this module only draws them, as grouped
bars per class in the paper's style (Xiao et al. 2020, Fig. 2), the gap written over each group.
"""

import numpy as np
import pandas as pd

from saliency_audit.report.figures import CLASS_COLOURS, plt, short_label

BARS = {
    "acc_original": "image",
    "acc_object_only": "object only",
    "acc_background_only": "background only",
    "acc_mixed_same": "Mixed-Same",
    "acc_mixed_rand": "Mixed-Rand",
}


def backgrounds_figure(table: pd.DataFrame) -> plt.Figure:
    """Grouped bars per true class (and all classes), over all splits: accuracy on the image, its object
    only, its background only, and its object on a background of its own class (Mixed-Same) or of
    another class (Mixed-Rand); BG-Gap, the difference of the last two, over each group."""
    rows = table[table["split"] == "all"].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(2.0 + 1.9 * max(len(rows), 1), 3.6))
    width = 0.8 / len(BARS)
    x = np.arange(len(rows))
    for k, (column, text) in enumerate(BARS.items()):
        ax.bar(x + (k - (len(BARS) - 1) / 2) * width, rows[column], width, color=CLASS_COLOURS[k], label=text)
    for position, (gap, se) in enumerate(zip(rows["bg_gap"], rows["bg_gap_se"])):
        shown = "BG-Gap n/a" if np.isnan(gap) else f"BG-Gap {gap:+.2f}" + ("" if np.isnan(se) else f" ± {se:.2f}")
        ax.text(position, 1.02, shown, ha="center", va="bottom", fontsize=8)
    if len(rows):
        ax.axhline(rows["chance"].iloc[0], color="grey", ls=":", lw=1)
        ax.text(1.0, rows["chance"].iloc[0], " chance", color="grey", fontsize=8, va="center", ha="left",
                transform=ax.get_yaxis_transform())  # fmt: skip
    names = [
        "all classes" if c == "all" and k == len(rows) - 1 else short_label(c) for k, c in enumerate(rows["class"])
    ]
    ax.set_xticks(x, [f"{name}\n(n = {n})" for name, n in zip(names, rows["n"])])
    ax.set_xlim(-0.6, max(len(rows), 1) - 0.4)
    ax.set_ylim(0, 1.12)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("accuracy")
    ax.set_xlabel("true class (all splits)")
    ax.legend(frameon=False, fontsize=8, ncol=len(BARS), loc="upper center", bbox_to_anchor=(0.5, 1.22))
    fig.tight_layout()
    return fig
