"""Rule `simulate_demo`: the embedded demo catalog, SDSS-like gri JPEG cutouts and true object masks."""

import sys
from pathlib import Path
from typing import Any

from saliency_audit.demo.simulation import class_counts, simulate
from saliency_audit.report.data_figures import preview_figure
from saliency_audit.report.figures import save_figure
from saliency_audit.runtime.atomic_io import write_csv
from saliency_audit.runtime.job import start_job


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    out = snakemake.output
    demo, target = snakemake.params.demo, snakemake.params.target
    catalog = simulate(demo, target, Path(out.images), Path(out.masks), Path(out.twins), snakemake.threads)
    write_csv(catalog, out.catalog)
    save_figure(preview_figure(catalog, Path(out.images), target), out.preview)
    print(f"rendered {len(catalog)} galaxies; classes: {class_counts(catalog, target)}", file=sys.stderr)
    print(f"shortcut stars planted: {int(catalog['shortcut'].sum())}", file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
