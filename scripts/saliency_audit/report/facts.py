"""The headline findings of a finished run, for the top of the HTML report.

Read at report time from the run's own small tables (class counts, metrics,
saliency headlines) and from the config; anything not produced yet is simply
absent, so ``snakemake --report`` on a partial run still works. Every string is
returned already escaped for reStructuredText (``report_text.rst_text``): the
template prints them as they are, and no catalog or config text is ever parsed
as markup.
"""

import json
from pathlib import Path
from typing import Any

import pandas as pd

from saliency_audit.audit.label_problems import count_by_split
from saliency_audit.data.near_duplicates import crossing_pairs, read_near_duplicates
from saliency_audit.report.text import rst_text


def _json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def report_facts(results: str | Path, config: dict[str, Any]) -> dict[str, Any]:
    """run (the catalog, target, model and results folder), class_counts, metrics, near_duplicates
    (pairs, crossing, distance), label_problems (total, train, valid), headlines; each but the first may be missing."""
    results = Path(results)
    facts: dict[str, Any] = {
        "run": {
            "catalog": rst_text(config["catalog"]),
            "target": rst_text(config["target"]["column"]),
            "arch": rst_text(config["model"]["arch"]),
            "results": rst_text(config["results"]),
            "min_object_energy": rst_text(config["saliency"]["min_object_energy"]),
        }
    }
    counts = results / "classes/class_counts.csv"
    if counts.is_file():
        table = pd.read_csv(counts, dtype={"class": str}, keep_default_na=False)
        facts["class_counts"] = [
            {
                "class": rst_text(row["class"]),
                "catalog": int(row["catalog"]),
                "kept": bool(row["kept"]),
                "train": int(row["train"]),
                "valid": int(row["valid"]),
            }
            for row in table.to_dict("records")
        ]
    metrics = _json(results / "eval/metrics.json")
    if metrics is not None:
        names = ("accuracy", "roc_auc", "f1", "rmse", "mae", "r2", "nmad")
        facts["metrics"] = {k: float(metrics[k]) for k in names if metrics.get(k) is not None}
    duplicates = results / "catalog/near_duplicates.csv"
    if duplicates.is_file():
        table = read_near_duplicates(duplicates)
        facts["near_duplicates"] = {
            "pairs": len(table),
            "crossing": crossing_pairs(table),
            "distance": rst_text(config["split"]["near_duplicate_distance"]),
        }
    problems = results / "eval/label_problems.csv"
    if problems.is_file():
        table = pd.read_csv(problems, dtype={"split": str}, keep_default_na=False, usecols=["split"])
        facts["label_problems"] = {"total": len(table), **count_by_split(table)}
    headline = _json(results / "saliency/headline.json")
    if headline is not None:
        facts["headlines"] = [rst_text(line, max_length=2000) for line in headline["headlines"]]
    return facts
