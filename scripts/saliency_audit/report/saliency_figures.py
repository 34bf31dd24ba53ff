"""The saliency stage's figures: strategy clusters, flag rates and backgrounds, and the galleries.

The numbers come from ``saliency_audit.saliency``; this module only draws them. Its modules are
imported where they are used: each rule loads only what its own figures need (the summary's figures
need neither torch, through the galleries' maps, nor scikit-learn, through the clusters), so a job's
memory stays what it was before the figures shared this module.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib import patheffects

from saliency_audit.data.image_io import shown_rgb
from saliency_audit.model.metrics import top_losses
from saliency_audit.report.figures import CLASS_COLOURS, plt, safe_name, short_label
from saliency_audit.saliency.vocabulary import STATE_OK

if TYPE_CHECKING:
    from saliency_audit.saliency.clusters import Strategies
    from saliency_audit.saliency.galleries import GalleryInputs

# white on a black outline: readable on a dark sky and on a bright photograph alike
TEXT = {"ha": "center", "color": "white", "fontsize": 8,
        "path_effects": [patheffects.withStroke(linewidth=2.2, foreground="black")]}  # fmt: skip


def cluster_figure(
    name: str,
    summary: pd.DataFrame,
    means: dict[tuple[str, int], np.ndarray],
    examples: dict[int, list[tuple[np.ndarray, np.ndarray]]],
) -> plt.Figure:
    """One column per cluster: its mean map, then example images under their own maps."""
    from saliency_audit.saliency.clusters import EXAMPLES

    rows = summary[summary["predicted"] == name].sort_values("cluster")
    n = len(rows)
    fig, axes = plt.subplots(1 + EXAMPLES, n, figsize=(2.2 * n, 2.2 * (1 + EXAMPLES)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for column, (_, row) in enumerate(rows.iterrows()):
        cluster = int(row["cluster"])
        ax = axes[0, column]
        ax.imshow(means[(name, cluster)], cmap="inferno", interpolation="bicubic")
        mark = "\ncandidate shortcut" if row["candidate_shortcut"] else ""
        ax.set_title(
            f"cluster {cluster}: n={int(row['n'])} ({row['share']:.0%})\n"
            f"energy {row['energy_in_object']:.2f}, relative {row['relative_energy']:.2f}{mark}",
            fontsize=7,
            color="#bc1f1f" if row["candidate_shortcut"] else "black",
        )
        for r, (image, cam) in enumerate(examples.get(cluster, [])[:EXAMPLES], start=1):
            axes[r, column].imshow(shown_rgb(image))
            size = image.shape[0]
            axes[r, column].imshow(cam, alpha=0.6, cmap="inferno", interpolation="bicubic", extent=(0, size, size, 0))
    fig.suptitle(f"Strategies of predicted '{short_label(name)}': mean Grad-CAM per cluster and examples", fontsize=9)
    fig.tight_layout()
    return fig


def cluster_figures(strategies: Strategies) -> Iterator[tuple[str, plt.Figure]]:
    """The file name and figure of each predicted class with scored images, drawn one at a time
    (the caller saves and closes each before the next is drawn)."""
    for k, name in enumerate(strategies.classes):
        if name not in strategies.examples:
            continue
        figure = cluster_figure(name, strategies.summary, strategies.means, strategies.examples[name])
        yield safe_name(k, name), figure


def energy_figure(stats: pd.DataFrame, threshold: float, planted: np.ndarray | None) -> plt.Figure:
    """Distributions of energy_in_object and relative_energy per predicted class (shortcut images dashed)."""
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.2), sharey=False)
    bins = np.linspace(0, 1, 41)
    ok = (stats["state"] == STATE_OK).to_numpy()
    for ax, metric in zip(axes, ("energy_in_object", "relative_energy")):
        for k, name in enumerate(stats["predicted"].cat.categories):
            member = ok & (stats["predicted"] == name).to_numpy()
            colour, shown = CLASS_COLOURS[k % len(CLASS_COLOURS)], short_label(name)
            if planted is not None and (member & planted).any():
                ax.hist(stats.loc[member & ~planted, metric], bins, histtype="step", color=colour, lw=1.5,
                        label=f"predicted {shown}, clean")  # fmt: skip
                ax.hist(stats.loc[member & planted, metric], bins, histtype="step", color=colour, lw=1.5, ls="--",
                        label=f"predicted {shown}, shortcut")  # fmt: skip
            else:
                ax.hist(
                    stats.loc[member, metric], bins, histtype="step", color=colour, lw=1.5, label=f"predicted {shown}"
                )
        ax.set_xlabel(metric.replace("_", " "))
        ax.set_xlim(0, 1)
        ax.set_yscale("log")  # maps fully on the object pile up at 1; the tail is what matters
    axes[0].set_ylabel("images")
    axes[1].axvline(threshold, color="grey", ls=":", lw=1)
    axes[1].text(
        threshold, 0.02, "flagged  ", color="grey", fontsize=8, ha="right", transform=axes[1].get_xaxis_transform()
    )
    axes[0].legend(frameon=False, fontsize=7, loc="upper left")
    fig.suptitle("Grad-CAM mass on the object, per predicted class", fontsize=10)
    fig.tight_layout()
    return fig


def gallery_figure(
    chosen: pd.DataFrame, images: np.ndarray, cams: np.ndarray, masks: np.ndarray, classes: list[str], title: str
) -> plt.Figure:
    """One row per image: the image (id on top), then each class's ReLU'd Grad-CAM with its probability."""
    n, size = len(chosen), images.shape[1]
    columns = 1 + len(classes)
    fig, axes = plt.subplots(n, columns, figsize=(2.6 * columns, 2.6 * n), squeeze=False, sharey=True)
    for r, (_, row) in enumerate(chosen.iterrows()):
        axes[r, 0].imshow(shown_rgb(images[r]))
        axes[r, 0].text(0.5, 0.9, str(row["id"]), transform=axes[r, 0].transAxes, **TEXT)
        verdict = "correct" if row["correct"] else f"true {short_label(row['label'])}"
        predicted = f"pred {short_label(row['predicted'])} ({verdict})"
        axes[r, 0].text(0.5, 0.06, predicted, transform=axes[r, 0].transAxes, **TEXT)
        for k, name in enumerate(classes, start=1):
            ax = axes[r, k]
            ax.imshow(shown_rgb(images[r]))
            ax.imshow(np.clip(cams[r, k - 1], 0, None), alpha=0.6, extent=(0, size, size, 0), interpolation="bicubic",
                      cmap="inferno")  # fmt: skip
            state = row.get(f"state_{name}", STATE_OK)
            where = f"on object {row[f'energy_in_object_{name}']:.2f}" if state == STATE_OK else state.replace("_", " ")
            ax.text(0.5, 0.9, short_label(name), transform=ax.transAxes, **TEXT)
            ax.text(0.5, 0.06, f"p = {row[f'prob_{name}']:.3f} · {where}", transform=ax.transAxes, **TEXT)
        for ax in axes[r]:
            if masks[r].any():
                ax.contour(masks[r], levels=[0.5], colors="cyan", linewidths=0.7)
            ax.set_axis_off()
    fig.tight_layout()
    height = fig.get_figheight()
    fig.subplots_adjust(wspace=0.02, top=1 - 0.5 / height)
    fig.suptitle(title, fontsize=10, y=1 - 0.15 / height, va="top")
    return fig


Gallery = tuple[str, plt.Figure, pd.DataFrame]  # file name, figure, the table of what it shows


def _drawn(chosen: pd.DataFrame, title: str, name: str, inputs: GalleryInputs) -> Iterator[Gallery]:
    """``name``, the gallery of ``chosen`` and its table; nothing (and a log line) when no image was chosen."""
    if chosen.empty:
        print(f"{name}: no image to show", file=sys.stderr)
        return
    from saliency_audit.saliency.galleries import gallery_panels, gallery_table  # torch-heavy: only when drawn

    pixels, up, masks, classes = gallery_panels(chosen, inputs)
    yield name, gallery_figure(chosen, pixels, up, masks, classes, title), gallery_table(chosen)


def galleries(inputs: GalleryInputs, settings: dict[str, Any]) -> Iterator[Gallery]:
    """File name, figure and table of every gallery, each chosen just before it is drawn (the caller
    saves and closes each before the next): per predicted class the correct predictions resting most
    on the background and the misclassified ones, apart; the members of each candidate shortcut
    cluster (``inputs.candidates``); a random sample (restricted by
    ``settings["where"]``) and the top losses of the valid split."""
    from saliency_audit.saliency.galleries import most_background_reliant, random_sample

    n, stats = settings["n"], inputs.stats
    how = "resting most on the background" if "background_reliance" in stats else "with the least map energy on it"
    for k, name in enumerate(inputs.classes):
        predicted = stats["predicted"] == name
        chosen = most_background_reliant(stats, predicted & stats["correct"], n)
        title = f"Correct '{short_label(name)}' predictions {how}"
        yield from _drawn(chosen, title, "background-" + safe_name(k, name), inputs)
        chosen = most_background_reliant(stats, predicted & ~stats["correct"], n)
        title = f"Misclassified as '{short_label(name)}', {how}"
        yield from _drawn(chosen, title, "misclassified-" + safe_name(k, name), inputs)
    for row in inputs.candidates.itertuples():
        members = (stats["predicted"] == row.predicted) & (stats["cluster"] == row.cluster)
        chosen = most_background_reliant(stats, members, n)
        title = f"Candidate shortcut: cluster {row.cluster} of '{short_label(str(row.predicted))}' ({row.n} images)"
        k = inputs.classes.index(str(row.predicted))
        yield from _drawn(chosen, title, f"cluster-{row.cluster}-" + safe_name(k, str(row.predicted)), inputs)
    where = settings.get("where")
    label = f" with {where}" if where else ""
    chosen = random_sample(inputs.stats, inputs.catalog, n, where, settings["seed"])
    yield from _drawn(chosen, f"Random images{label}", "random.png", inputs)
    chosen = top_losses(inputs.stats, inputs.classes, n)
    yield from _drawn(chosen, "Top losses of the valid split", "top-losses.png", inputs)
