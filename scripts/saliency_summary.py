"""saliency_summary: flag rates per group, the shortcut benchmark, the headline, and the final stats table.

``stats.parquet`` is the per-image table of the output contract (localisation
statistics + strategy cluster). ``summary.csv`` holds one row per group:
all images, each true class, each predicted class, each split, correct vs
incorrect, and (when the catalog has a truth column) shortcut vs clean images
of each class that has both, with the AUROC that scores the audit.
"""

import sys
from typing import Any

import numpy as np
import pandas as pd

from atomic_io import write_csv, write_json, write_parquet
from figures import CLASS_COLOURS, plt, save_figure
from job import start_job
from metrics import binary_auc

MEANS = ("energy_in_object", "relative_energy", "pointing_hit", "rank_accuracy", "peak_offset", "entropy")


def group_rows(stats: pd.DataFrame, by: str, column: str | None) -> pd.DataFrame:
    """Flag rate and mean statistics of the images grouped by ``column`` (all images when None)."""
    groups = [("all", stats)] if column is None else stats.groupby(column, observed=True, sort=True)
    rows = []
    for value, group in groups:
        ok = group["state"] == "ok"
        rows.append(
            {
                "group_by": by,
                "group": str(value),
                "n": len(group),
                "flagged": int(group["background_focused"].sum()),
                "flag_rate": float(group["background_focused"].mean()),
                "empty_map_rate": float((group["state"] == "empty_map").mean()),
                "empty_object_rate": float((group["state"] == "empty_object").mean()),
                **{f"mean_{m}": float(group.loc[ok, m].mean()) if ok.any() else np.nan for m in MEANS},
            }
        )
    return pd.DataFrame(rows)


def shortcut_benchmark(stats: pd.DataFrame, truth: pd.Series, truth_column: str) -> dict[str, Any]:
    """Per true class holding both shortcut and clean images: how well the maps tell them apart.

    The headline AUROCs score the map of the class itself (does the evidence
    for ``high`` rest on the star?); the ``_predicted`` ones score the map of
    the predicted class, which for a misclassified clean image is the other
    class's evidence. Flag rates are those of ``background_focused``.
    """
    planted = truth.reindex(stats["id"]).fillna(0).astype(bool).to_numpy()
    result: dict[str, Any] = {"truth_column": truth_column, "classes": {}}
    for name in stats["label"].cat.categories:
        in_class = (stats["label"] == name).to_numpy()
        shortcut, clean = in_class & planted, in_class & ~planted
        if not shortcut.any() or not clean.any():
            continue
        scores: dict[str, Any] = {"n_shortcut": int(shortcut.sum()), "n_clean": int(clean.sum())}
        for suffix, label in ((f"_{name}", ""), ("", "_predicted")):
            scored = in_class & (stats[f"state{suffix}"] == "ok").to_numpy()
            for metric in ("energy_in_object", "relative_energy"):
                values = stats[f"{metric}{suffix}"].to_numpy()
                scores[f"auroc_{metric}{label}"] = binary_auc(planted[scored], -values[scored])
        scores["flag_rate_shortcut"] = float(stats["background_focused"].to_numpy()[shortcut].mean())
        scores["flag_rate_clean"] = float(stats["background_focused"].to_numpy()[clean].mean())
        result["classes"][str(name)] = scores
    if not result["classes"]:
        result["note"] = f"no class holds both images with {truth_column} set and images without it"
    return result


def benchmark_rows(benchmark: dict[str, Any]) -> pd.DataFrame:
    """The benchmark as summary rows: shortcut and clean images of each scored class."""
    rows = []
    for name, scores in benchmark.get("classes", {}).items():
        for kind in ("shortcut", "clean"):
            rows.append(
                {
                    "group_by": f"{benchmark['truth_column']} in true class",
                    "group": f"{name}: {kind}",
                    "n": scores[f"n_{kind}"],
                    "flag_rate": scores[f"flag_rate_{kind}"],
                    **{key: value for key, value in scores.items() if key.startswith("auroc_")},
                }
            )
    return pd.DataFrame(rows)


def summary_table(stats: pd.DataFrame, benchmark: dict[str, Any] | None) -> pd.DataFrame:
    parts = [
        group_rows(stats, "all", None),
        group_rows(stats, "true class", "label"),
        group_rows(stats, "predicted class", "predicted"),
        group_rows(stats, "split", "split"),
        group_rows(stats.assign(outcome=np.where(stats["correct"], "correct", "incorrect")), "prediction", "outcome"),
    ]
    if benchmark is not None:
        parts.append(benchmark_rows(benchmark))
    table = pd.concat([p for p in parts if not p.empty], ignore_index=True)
    return table.astype({"n": "Int64", "flagged": "Int64"})


def headlines(summary: pd.DataFrame, benchmark: dict[str, Any] | None, threshold: float) -> list[str]:
    """Plain sentences for the report: flag rate per predicted class, then the benchmark."""
    lines = []
    for _, row in summary[summary["group_by"] == "predicted class"].iterrows():
        lines.append(
            f"{row['flag_rate']:.0%} of '{row['group']}' predictions rest mainly on the background "
            f"({row['flagged']} of {row['n']}; less than {threshold:.0%} of the object's attainable map energy)."
        )
    for name, scores in (benchmark or {}).get("classes", {}).items():
        lines.append(
            f"Planted shortcut in '{name}': 1 - energy_in_object of the '{name}' map separates the "
            f"{scores['n_shortcut']} shortcut images from the {scores['n_clean']} clean ones with AUROC "
            f"{scores['auroc_energy_in_object']:.3f} (relative energy: {scores['auroc_relative_energy']:.3f}; "
            f"predicted-class map: {scores['auroc_energy_in_object_predicted']:.3f}); "
            f"flagged {scores['flag_rate_shortcut']:.0%} of shortcut and "
            f"{scores['flag_rate_clean']:.0%} of clean images."
        )
    return lines


def energy_figure(stats: pd.DataFrame, threshold: float, planted: np.ndarray | None) -> plt.Figure:
    """Distributions of energy_in_object and relative_energy per predicted class (shortcut images dashed)."""
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.2), sharey=False)
    bins = np.linspace(0, 1, 41)
    ok = (stats["state"] == "ok").to_numpy()
    for ax, metric in zip(axes, ("energy_in_object", "relative_energy")):
        for k, name in enumerate(stats["predicted"].cat.categories):
            member = ok & (stats["predicted"] == name).to_numpy()
            colour = CLASS_COLOURS[k % len(CLASS_COLOURS)]
            if planted is not None and (member & planted).any():
                ax.hist(stats.loc[member & ~planted, metric], bins, histtype="step", color=colour, lw=1.5,
                        label=f"predicted {name}, clean")  # fmt: skip
                ax.hist(stats.loc[member & planted, metric], bins, histtype="step", color=colour, lw=1.5, ls="--",
                        label=f"predicted {name}, shortcut")  # fmt: skip
            else:
                ax.hist(
                    stats.loc[member, metric], bins, histtype="step", color=colour, lw=1.5, label=f"predicted {name}"
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


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    params = snakemake.params
    stats = pd.read_parquet(snakemake.input.stats).merge(
        pd.read_parquet(snakemake.input.clusters), on="id", how="left", validate="one_to_one"
    )
    write_parquet(stats, snakemake.output.stats)

    truth_column = params.truth_column
    benchmark, planted = None, None
    if truth_column is not None:  # validate_catalog checked that the column exists and holds numbers
        truth = pd.read_parquet(snakemake.input.clean, columns=["id", truth_column]).set_index("id")[truth_column]
        benchmark = shortcut_benchmark(stats, truth, truth_column)
        planted = truth.reindex(stats["id"]).fillna(0).astype(bool).to_numpy()
    write_json(benchmark or {"truth_column": truth_column, "classes": {}, "note": "no truth column"},
               snakemake.output.benchmark)  # fmt: skip

    summary = summary_table(stats, benchmark)
    write_csv(summary, snakemake.output.summary)
    lines = headlines(summary, benchmark, params.min_object_energy)
    write_json({"headlines": lines}, snakemake.output.headline)
    save_figure(energy_figure(stats, params.min_object_energy, planted), snakemake.output.figure)
    print("\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
