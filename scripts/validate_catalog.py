"""Rule `validate_catalog`: check every row of the catalog and every image before anything uses them."""

import sys
from typing import Any

from saliency_audit.data.catalog_csv import DELIMITER_NAMES
from saliency_audit.data.classes import is_regression
from saliency_audit.data.image_io import Decoding
from saliency_audit.data.validation import numeric_columns, problem_counts, read_catalog, source_metadata, validate
from saliency_audit.runtime.atomic_io import write_csv, write_parquet
from saliency_audit.runtime.job import start_job


def main(snakemake: Any) -> None:
    start_job(snakemake.log[0])
    p = snakemake.params
    catalog = read_catalog(snakemake.input.catalog, p.delimiter)
    print(f"read {catalog.n_rows} rows with the {DELIMITER_NAMES[catalog.delimiter]} delimiter", file=sys.stderr)
    clean, integrity = validate(
        catalog,
        id_column=p.id_column,
        images=p.images,
        target_column=p.target["column"],
        numeric_target="bins" in p.target or is_regression(p.target),
        invalid=p.target.get("invalid", []),
        max_pixels=p.max_pixels,
        size=p.size,
        nsigma=p.nsigma,
        workers=snakemake.threads,
        numeric_columns=numeric_columns(p.target, p.truth_column, p.region),
        decoding=Decoding.from_config(p.pixels),
    )
    write_csv(integrity, snakemake.output.integrity)
    write_parquet(clean, snakemake.output.clean, metadata=source_metadata(catalog))
    print(f"{len(clean)} of {catalog.n_rows} rows usable; {len(integrity)} problems and warnings", file=sys.stderr)
    for problem, count in problem_counts(integrity).items():
        print(f"  {problem}: {count}", file=sys.stderr)


if __name__ == "__main__":
    main(snakemake)  # type: ignore[name-defined]  # noqa: F821
