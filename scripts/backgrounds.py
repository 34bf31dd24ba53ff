"""Rule `backgrounds`: BG-Gap per class and split, each object pasted on a background of its own / another class."""

import sys
from pathlib import Path
from typing import Any

from saliency_audit.data.image_io import open_packed
from saliency_audit.data.packing import PackedIndex
from saliency_audit.data.region_store import RegionStore
from saliency_audit.model.job import load_model
from saliency_audit.model.training import read_labels
from saliency_audit.report.background_figures import backgrounds_figure
from saliency_audit.report.figures import save_figure
from saliency_audit.runtime.atomic_io import write_csv
from saliency_audit.runtime.job import start_job
from saliency_audit.runtime.reuse import job_key, reusable
from saliency_audit.saliency.backgrounds import background_gap, describe_bg_gap
from saliency_audit.saliency.probes import read_catalog


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    params, inputs = snakemake.params, snakemake.input
    labels = read_labels(inputs.labels)
    files = [inputs.model, inputs.images, inputs.index, *inputs.regions, *inputs.region_problems, inputs.clean]
    key = job_key(snakemake, files, [labels])
    with reusable(snakemake.output, key, params.reuse) as reused:
        if reused:
            return
        model, meta, device = load_model(inputs.model, params.device, snakemake.threads)
        index = PackedIndex.read(inputs.index)
        regions = RegionStore.open(inputs.regions, inputs.region_problems, len(index))
        table = background_gap(
            model, meta, open_packed(inputs.images), index, regions, labels, read_catalog(inputs.clean),
            params.settings, device, params.batch_size, Path(snakemake.output.table).parent,
        )  # fmt: skip
        write_csv(table, snakemake.output.table)
        save_figure(backgrounds_figure(table), snakemake.output.figure)
        print(describe_bg_gap(table), file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
