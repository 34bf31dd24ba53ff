"""Rule `probes`: every image with an object region shown as it is, object only, background only, control."""

import sys
from typing import Any

from saliency_audit.audit.tables import read_logits
from saliency_audit.data.region_store import RegionStore
from saliency_audit.model.job import open_shard
from saliency_audit.runtime.atomic_io import write_parquet
from saliency_audit.runtime.job import start_job
from saliency_audit.runtime.reuse import job_key, reusable
from saliency_audit.saliency.probes import describe_probes, probe_table, read_catalog


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    params = snakemake.params
    job = open_shard(
        snakemake.input.model, snakemake.input.images, snakemake.input.labels, params.shards, params.shard,
        params.device, snakemake.threads,
    )  # fmt: skip
    catalog = read_catalog(snakemake.input.clean)
    inputs = [snakemake.input.model, snakemake.input.images, snakemake.input.audit, snakemake.input.regions,
              snakemake.input.region_problems, snakemake.input.clean]  # fmt: skip
    key = job_key(snakemake, inputs, [job.labels])
    with reusable(snakemake.output, key, params.reuse) as reused:
        if reused:
            return
        logits = read_logits(snakemake.input.audit, job.labels["id"].astype(str).tolist(), job.meta["classes"])
        regions = RegionStore.open([snakemake.input.regions], [snakemake.input.region_problems], len(job.labels))
        table = probe_table(
            job.model, job.meta, job.images, job.labels, logits, regions, catalog, params.settings, job.device,
            params.batch_size,
        )  # fmt: skip
        write_parquet(table, snakemake.output.part)
        print(describe_probes(table, job.labels, params.shard), file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
