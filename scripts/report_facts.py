"""The headline findings of a finished run, for the top of the HTML report.

Read at report time from the run's own small tables (class counts, metrics,
saliency headlines, shortcut benchmark); anything not produced yet is simply
absent, so ``snakemake --report`` on a partial run still works.
"""

import json
from pathlib import Path
from typing import Any

import pandas as pd


def _json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def report_facts(results: str | Path) -> dict[str, Any]:
    """class_counts (list of dicts), metrics, headlines (sentences), benchmark; each may be missing."""
    results = Path(results)
    facts: dict[str, Any] = {}
    counts = results / "classes/class_counts.csv"
    if counts.is_file():
        facts["class_counts"] = pd.read_csv(counts).to_dict("records")
    metrics = _json(results / "eval/metrics.json")
    if metrics is not None:
        facts["metrics"] = {k: metrics[k] for k in ("accuracy", "roc_auc", "f1") if k in metrics}
    headline = _json(results / "saliency/headline.json")
    if headline is not None:
        facts["headlines"] = headline["headlines"]
    return facts
