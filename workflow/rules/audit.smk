# The audit pass (scattered over audit.shards jobs) and the PCA of its activations (gathered).


rule audit:
    input:
        model=res("model/model.pt"),
        images=res("images/part-{shard}.npy"),
        labels=res("classes/labels.parquet"),
    output:
        part=res("audit/part-{shard}.parquet"),
        moments=res("moments/part-{shard}.npz"),
    log:
        res("logs/audit/{shard}.log"),
    benchmark:
        res("benchmarks/audit/{shard}.tsv")
    wildcard_constraints:
        shard=r"\d+",
    conda:
        ENVIRONMENT
    threads: workflow.cores
    resources:
        **rule_resources("audit", config["audit"]["device"]),
    params:
        shard=lambda wildcards: int(wildcards.shard),
        shards=config["audit"]["shards"],
        layer=config["audit"]["layer"],
        batch_size=config["audit"]["batch_size"],
        device=config["audit"]["device"],
        compile=config["audit"]["compile"],
        reuse=config["reuse"],
    script:
        "../../scripts/audit.py"


rule pca:
    input:
        parts=AUDIT_PARTS,
        moments=AUDIT_MOMENTS,
        labels=res("classes/labels.parquet"),
        images=res("images/images.npy"),
    output:
        table=res("pca/pca.parquet"),
        summary=res("pca/pca.json"),
        scatter=report(
            res("pca/pca_scatter.png"),
            caption="../report/pca_scatter.rst",
            category="Activations & PCA",
            labels={"figure": "PCA scatter"},
        ),
        thumbnails=report(
            res("pca/pca_thumbnails.png"),
            caption="../report/pca_thumbnails.rst",
            category="Activations & PCA",
            labels={"figure": "PCA thumbnails"},
        ),
        variance=report(
            res("pca/explained_variance.png"),
            caption="../report/explained_variance.rst",
            category="Activations & PCA",
            labels={"figure": "explained variance"},
        ),
    log:
        logfile("pca"),
    benchmark:
        bench("pca")
    conda:
        ENVIRONMENT
    resources:
        **rule_resources("pca"),
    params:
        components=config["pca"]["components"],
        whiten=config["pca"]["whiten"],
        target=config["target"],
    script:
        "../../scripts/pca.py"


rule label_problems:
    input:
        parts=AUDIT_PARTS,
        moments=AUDIT_MOMENTS,
        labels=res("classes/labels.parquet"),
    output:
        table=report(
            res("eval/label_problems.csv"),
            caption="../report/label_problems.rst",
            category="Data",
            labels={"table": "likely label problems"},
        ),
    log:
        logfile("label_problems"),
    benchmark:
        bench("label_problems")
    conda:
        ENVIRONMENT
    resources:
        **rule_resources("label_problems"),
    params:
        target=config["target"],
    script:
        "../../scripts/label_problems.py"
