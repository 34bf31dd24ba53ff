"""Rule `audit`: one pass over every kept image that stores predictions, activations and all-class Grad-CAM."""

from typing import Any

from saliency_audit.audit.audit_pass import resolve_layer, run_audit
from saliency_audit.model.job import open_shard
from saliency_audit.runtime.job import start_job
from saliency_audit.runtime.reuse import job_key, reusable


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    params = snakemake.params
    job = open_shard(
        snakemake.input.model, snakemake.input.images, snakemake.input.labels, params.shards, params.shard,
        params.device, snakemake.threads,
    )  # fmt: skip
    layer = resolve_layer(job.meta, params.layer)
    key = job_key(snakemake, [snakemake.input.model, snakemake.input.images], [job.labels])
    with reusable(snakemake.output, key, params.reuse) as reused:
        if reused:
            return
        moments = run_audit(
            job.model, job.meta, job.images, job.labels, layer, params.batch_size, job.device, snakemake.output.part,
            {"model_sha256": job.meta["file_sha256"], "shard": params.shard, "shards": params.shards},
            params.compile,
        )  # fmt: skip
        moments.save(snakemake.output.moments)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
