"""Rule `import_model`: a model trained elsewhere (``model.checkpoint``) as this workflow's checkpoint."""

import sys
from typing import Any

from saliency_audit.data.image_io import open_packed
from saliency_audit.model.checkpoint import save_checkpoint
from saliency_audit.model.pretrained import describe_import, import_checkpoint
from saliency_audit.model.training import read_labels
from saliency_audit.runtime.job import start_job
from saliency_audit.runtime.reuse import job_key, reusable


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    params, inputs = snakemake.params, snakemake.input
    labels = read_labels(inputs.labels)
    key = job_key(snakemake, [inputs.checkpoint, inputs.images], [labels[["id", "class", "split", "target"]]])
    with reusable(snakemake.output, key, params.reuse) as reused:
        if reused:
            return
        model, metadata = import_checkpoint(
            inputs.checkpoint, params.model, params.pixels, open_packed(inputs.images), labels, params.regression
        )
        save_checkpoint(model, metadata, snakemake.output.model)
        print(describe_import(metadata), file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
