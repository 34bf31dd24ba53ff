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


rule explorer:
    input:
        pcs=res("pca/pca.parquet"),
        labels=res("classes/labels.parquet"),
        predictions=res("eval/predictions.parquet"),
        stats=res("saliency/stats.parquet"),
        parts=AUDIT_PARTS,
        images=res("images/images.npy"),
        index=res("images/index.parquet"),
        regions=REGION_PARTS,
        region_problems=REGION_PROBLEMS,
    output:
        page=report(
            res("explorer.html"),
            caption="../report/explorer.rst",
            category="Explorer",
            labels={"page": "audit explorer"},
        ),
    log:
        logfile("explorer"),
    benchmark:
        bench("explorer")
    conda:
        ENVIRONMENT
    resources:
        **rule_resources("explorer"),
    params:
        max_thumbnails=config["explorer"]["max_thumbnails"],
    script:
        "../../scripts/explorer.py"
