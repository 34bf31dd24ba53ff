"""Rule `label_problems`: the images whose label the model and their neighbours both contradict."""

import sys
from typing import Any

from saliency_audit.audit.label_problems import count_by_split, find_label_problems
from saliency_audit.runtime.atomic_io import write_csv
from saliency_audit.runtime.job import start_job


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    inputs = snakemake.input
    table = find_label_problems(inputs.parts, inputs.moments, inputs.labels, snakemake.params.target)
    write_csv(table, snakemake.output.table)
    counts = count_by_split(table)
    print(f"{len(table)} likely label problems: {counts['train']} train, {counts['valid']} valid", file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
