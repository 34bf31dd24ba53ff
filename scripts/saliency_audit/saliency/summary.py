"""The two verdicts per group, the benchmarks, the headline, and the final stats table (rule
``saliency_summary``).

``stats.parquet`` is the per-image table of the output contract (localisation
statistics, probes + strategy cluster). ``summary.csv`` holds one row per group:
all images, each true class, each predicted class, each split, correct vs
incorrect, and (when the catalog has a truth column) shortcut vs clean images
of each class that has both, with the AUROC that scores the audit. Each row has
both verdicts: ``background_reliant`` (the probes: the prediction needs its
background) and ``background_focused`` (the maps: the evidence lies there), and
how often they agree (the Backgrounds Challenge table is the ``backgrounds`` rule's).
On the demo the benchmark also scores both verdicts against each image's twin.
"""

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from saliency_audit.model.metrics import binary_auc, tpr_at_fpr
from saliency_audit.saliency.vocabulary import (
    STATE_EMPTY_MAP,
    STATE_EMPTY_OBJECT,
    STATE_NO_OBJECT_EXPECTED,
    STATE_OK,
    STATE_UNCERTAIN,
)

MEANS = ("energy_in_object", "relative_energy", "pointing_hit", "rank_accuracy", "peak_offset", "entropy")


def group_rows(stats: pd.DataFrame, by: str, column: str | None) -> pd.DataFrame:
    """Flag rate and mean statistics of the images grouped by ``column`` (all images when None)."""
    groups = [("all", stats)] if column is None else stats.groupby(column, observed=True, sort=True)
    rows = []
    for value, group in groups:
        ok = group["state"] == STATE_OK
        rows.append(
            {
                "group_by": by,
                "group": str(value),
                "n": len(group),
                "reliant": int(group["background_reliant"].sum()),
                "reliant_rate": float(group["background_reliant"].mean()),
                "uncertain": int((group["probe_state"] == STATE_UNCERTAIN).sum()),
                "uncertain_rate": float((group["probe_state"] == STATE_UNCERTAIN).mean()),
                "mean_background_reliance": float(group["background_reliance"].mean()),
                "flagged": int(group["background_focused"].sum()),
                "flag_rate": float(group["background_focused"].mean()),
                "agreement": float((group["background_reliant"] == group["background_focused"]).mean()),
                "empty_map_rate": float((group["state"] == STATE_EMPTY_MAP).mean()),
                "empty_object_rate": float((group["state"] == STATE_EMPTY_OBJECT).mean()),
                "no_object_expected": int((group["state"] == STATE_NO_OBJECT_EXPECTED).sum()),
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
            scored = in_class & (stats[f"state{suffix}"] == STATE_OK).to_numpy()
            for metric in ("energy_in_object", "relative_energy"):
                values = stats[f"{metric}{suffix}"].to_numpy()
                scores[f"auroc_{metric}{label}"] = binary_auc(planted[scored], -values[scored])
        scores["flag_rate_shortcut"] = float(stats["background_focused"].to_numpy()[shortcut].mean())
        scores["flag_rate_clean"] = float(stats["background_focused"].to_numpy()[clean].mean())
        result["classes"][str(name)] = scores
    if not result["classes"]:
        result["note"] = f"no class holds both images with {truth_column} set and images without it"
    return result


def benchmark_rows(stats: pd.DataFrame, benchmark: dict[str, Any], planted: np.ndarray) -> pd.DataFrame:
    """The benchmark as summary rows: the shortcut and the clean images of each scored class, each a full
    group row (counts, both verdicts, means: the flags of the predicted-class map, as every row). The
    AUROCs that separate the two are one number per pair, on the shortcut row only: of the class's own
    map (``auroc_energy_in_object``) and of the predicted-class map (``..._predicted``, the map the
    flags use)."""
    rows = []
    by = f"{benchmark['truth_column']} in true class"
    for name, scores in benchmark.get("classes", {}).items():
        in_class = (stats["label"].astype(str) == name).to_numpy()
        for kind, members in (("shortcut", in_class & planted), ("clean", in_class & ~planted)):
            row = group_rows(stats[members], by, None).assign(group=f"{name}: {kind}")
            if kind == "shortcut":
                row = row.assign(**{key: value for key, value in scores.items() if key.startswith("auroc_")})
            rows.append(row)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def summary_table(
    stats: pd.DataFrame, benchmark: dict[str, Any] | None, planted: np.ndarray | None = None
) -> pd.DataFrame:
    """All group rows of ``summary.csv`` (all, true class, predicted class, split, outcome), then the
    benchmark's rows when the catalog has a truth column (``planted``: the images that have it set)."""
    parts = [
        group_rows(stats, "all", None),
        group_rows(stats, "true class", "label"),
        group_rows(stats, "predicted class", "predicted"),
        group_rows(stats, "split", "split"),
        group_rows(stats.assign(outcome=np.where(stats["correct"], "correct", "incorrect")), "prediction", "outcome"),
    ]
    if benchmark is not None and planted is not None:
        parts.append(benchmark_rows(stats, benchmark, planted))
    table = pd.concat([p for p in parts if not p.empty], ignore_index=True)
    counts = {"n": "Int64", "reliant": "Int64", "uncertain": "Int64", "flagged": "Int64", "no_object_expected": "Int64"}
    return table.astype(counts)


def reliance_benchmark(stats: pd.DataFrame, twins: pd.DataFrame) -> dict[str, Any]:
    """Both verdicts scored per predicted class against the twins' truth: the off-object sources
    carry more than half of the predicted class's margin."""
    share = twins.set_index(twins["id"].astype(str))["off_object_share"].reindex(stats["id"].astype(str))
    known = share.notna().to_numpy()
    truth = share.to_numpy() > 0.5
    result: dict[str, Any] = {"truth": "off-object sources carry more than half of the predicted class's margin "
                              "(the image against its twin without them)", "classes": {}}  # fmt: skip
    reliance = stats["background_reliance"].to_numpy()
    energy = stats["relative_energy"].to_numpy()
    for name in stats["predicted"].cat.categories:
        member = (stats["predicted"] == name).to_numpy() & known
        if not member.any():
            continue
        positive = truth & member
        undecided = (stats["probe_state"] == STATE_UNCERTAIN).to_numpy()
        scores: dict[str, Any] = {
            "n": int(member.sum()),
            "n_reliant": int(positive.sum()),
            "uncertain_rate": float(undecided[member].mean()),
            "uncertain_rate_reliant": float(undecided[positive].mean()) if positive.any() else np.nan,
        }
        for flag in ("background_reliant", "background_focused"):
            flagged = stats[flag].to_numpy() & member
            suffix = flag.removeprefix("background_")
            scores[f"recall_{suffix}"] = float(flagged[positive].mean()) if positive.any() else np.nan
            scores[f"precision_{suffix}"] = float(truth[flagged].mean()) if flagged.any() else np.nan
        for column, values in (("background_reliance", reliance), ("relative_energy", 1 - energy)):
            scored = member & ~np.isnan(values)
            scores[f"auroc_{column}"] = binary_auc(truth[scored], values[scored])
            scores[f"tpr_at_5pct_fpr_{column}"] = tpr_at_fpr(truth[scored], values[scored], 0.05)
        result["classes"][str(name)] = scores
    return result


def percent(value: float) -> str:
    """A share as a percentage, or "n/a" where it is undefined (no image to take it over)."""
    return "n/a" if np.isnan(value) else f"{value:.0%}"


def headlines(
    summary: pd.DataFrame, benchmark: dict[str, Any] | None, threshold: float, min_reliance: float
) -> list[str]:
    """Plain sentences for the report: per predicted class the confirmed finding (the probes), then
    what the maps say and how far the two agree; then the benchmarks."""
    lines = []
    for _, row in summary[summary["group_by"] == "predicted class"].iterrows():
        if row["no_object_expected"] == row["n"]:
            lines.append(f"'{row['group']}' has no object (saliency.object_classes): its {row['n']} predictions "
                         "are not scored against one and never flagged.")  # fmt: skip
            continue
        lines.append(
            f"{row['reliant_rate']:.0%} of '{row['group']}' predictions lose at least {min_reliance:.0%} of their "
            f"margin when the background is replaced, beyond what the fill alone does ({row['reliant']} of "
            f"{row['n']}; {row['uncertain']} are uncertain, their margin within the fill's own effect). Their maps say "
            f"{row['flag_rate']:.0%} rest mainly on the background ({row['flagged']} of {row['n']}; less than "
            f"{threshold:.0%} of the object's attainable map energy); the two verdicts agree on "
            f"{row['agreement']:.0%} of them."
        )
    for name, scores in (benchmark or {}).get("reliance", {}).get("classes", {}).items():
        if scores["n_reliant"] == 0:
            lines.append(f"Against the twins, no '{name}' prediction needs its off-object sources for more "
                         f"than half of its margin ({scores['n']} scored).")  # fmt: skip
            continue
        lines.append(
            f"Against the twins, the off-object sources carry more than half of the margin of {scores['n_reliant']} "
            f"of {scores['n']} '{name}' predictions: background_reliant finds {percent(scores['recall_reliant'])} "
            f"of them with precision {percent(scores['precision_reliant'])} (AUROC of background_reliance "
            f"{scores['auroc_background_reliance']:.3f}); background_focused finds "
            f"{percent(scores['recall_focused'])} with precision {percent(scores['precision_focused'])}."
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


@dataclass(frozen=True)
class SaliencySummary:
    """What rule ``saliency_summary`` writes; ``planted`` marks the images with the truth column set
    (None without one), for the energy figure."""

    stats: pd.DataFrame
    benchmark: dict[str, Any]
    summary: pd.DataFrame
    headlines: list[str]
    planted: np.ndarray | None


def run_saliency_summary(
    stats_path: str | os.PathLike,
    clusters_path: str | os.PathLike,
    clean_path: str | os.PathLike,
    twins_path: str | os.PathLike | None,
    truth_column: str | None,
    min_object_energy: float,
    min_reliance: float,
) -> SaliencySummary:
    """Read the rule's inputs (localisation statistics, clusters, the clean catalog's truth column and,
    on the demo, the twins' scores) and compute every table the rule writes."""
    stats = pd.read_parquet(stats_path).merge(
        pd.read_parquet(clusters_path), on="id", how="left", validate="one_to_one"
    )
    benchmark, planted = None, None
    if truth_column is not None:  # validate_catalog checked that the column exists and holds numbers
        truth = pd.read_parquet(clean_path, columns=["id", truth_column]).set_index("id")[truth_column]
        benchmark = shortcut_benchmark(stats, truth, truth_column)
        planted = truth.reindex(stats["id"]).fillna(0).astype(bool).to_numpy()
    benchmark = benchmark or {"truth_column": truth_column, "classes": {}, "note": "no truth column"}
    if twins_path:
        benchmark["reliance"] = reliance_benchmark(stats, pd.read_parquet(twins_path))
    summary = summary_table(stats, benchmark if truth_column is not None else None, planted)
    lines = headlines(summary, benchmark, min_object_energy, min_reliance)
    return SaliencySummary(stats, benchmark, summary, lines, planted)
