# The report's provenance table; the report itself is `snakemake --report`.


rule provenance:
    input:
        catalog=config["catalog"],
        images=res("images/images.npy"),
        model=res("model/model.pt"),
        clean=res("catalog/clean.parquet"),
        labels=res("classes/labels.parquet"),
    output:
        table=report(
            res("provenance/provenance.csv"),
            caption="../report/provenance.rst",
            category="Provenance",
            labels={"table": "provenance"},
        ),
    log:
        logfile("provenance"),
    conda:
        ENVIRONMENT
    params:
        config=RESOLVED_CONFIG,
        workflow_dir=WORKFLOW_DIR,
    script:
        "../../scripts/provenance.py"
