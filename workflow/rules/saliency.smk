# Saliency statistics against the object regions, strategy clusters, summaries and galleries.


rule saliency_stats:
    input:
        parts=AUDIT_PARTS,
        images=res("images/images.npy"),
        index=res("images/index.parquet"),
        clean=res("catalog/clean.parquet"),
    output:
        table=res("saliency/localisation.parquet"),
        problems=res("saliency/region_problems.csv"),
    resources:
        **rule_resources("saliency_stats"),
    log:
        logfile("saliency_stats"),
    benchmark:
        bench("saliency_stats")
    params:
        region=config["saliency"]["object"],
        min_object_energy=config["saliency"]["min_object_energy"],
        max_pixels=config["image"]["max_pixels"],
    conda:
        ENVIRONMENT
    script:
        "../../scripts/saliency_stats.py"


rule strategy_clusters:
    input:
        parts=AUDIT_PARTS,
        stats=res("saliency/localisation.parquet"),
        images=res("images/images.npy"),
        index=res("images/index.parquet"),
    output:
        clusters=res("saliency/clusters.parquet"),
        summary=report(
            res("saliency/clusters.csv"),
            caption="../report/clusters_table.rst",
            category="Saliency",
            labels={"table": "strategy clusters"},
        ),
        figures=report(
            directory(res("saliency/clusters")),
            patterns=["{name}.png"],
            caption="../report/clusters.rst",
            category="Saliency",
            labels={"figure": "strategy clusters {name}"},
        ),
    resources:
        **rule_resources("strategy_clusters"),
    log:
        logfile("strategy_clusters"),
    benchmark:
        bench("strategy_clusters")
    params:
        clusters=config["saliency"]["clusters"],
        min_object_energy=config["saliency"]["min_object_energy"],
    conda:
        ENVIRONMENT
    script:
        "../../scripts/strategy_clusters.py"


rule saliency_summary:
    input:
        stats=res("saliency/localisation.parquet"),
        clusters=res("saliency/clusters.parquet"),
        clean=res("catalog/clean.parquet"),
    output:
        stats=res("saliency/stats.parquet"),
        summary=report(
            res("saliency/summary.csv"),
            caption="../report/saliency_summary.rst",
            category="Saliency",
            labels={"table": "flag rates"},
        ),
        benchmark=res("saliency/benchmark.json"),
        headline=res("saliency/headline.json"),
        figure=report(
            res("saliency/energy_in_object.png"),
            caption="../report/energy_in_object.rst",
            category="Saliency",
            labels={"figure": "energy on the object"},
        ),
    log:
        logfile("saliency_summary"),
    benchmark:
        bench("saliency_summary")
    params:
        truth_column=config["saliency"]["truth_column"],
        min_object_energy=config["saliency"]["min_object_energy"],
    conda:
        ENVIRONMENT
    script:
        "../../scripts/saliency_summary.py"


rule galleries:
    input:
        parts=AUDIT_PARTS,
        stats=res("saliency/stats.parquet"),
        images=res("images/images.npy"),
        index=res("images/index.parquet"),
        clean=res("catalog/clean.parquet"),
    output:
        galleries=report(
            directory(res("saliency/galleries")),
            patterns=["{name}.png"],
            caption="../report/galleries.rst",
            category="Saliency",
            labels={"figure": "gallery {name}"},
        ),
    resources:
        **rule_resources("galleries"),
    log:
        logfile("galleries"),
    benchmark:
        bench("galleries")
    params:
        region=config["saliency"]["object"],
        gallery=config["saliency"]["gallery"],
        max_pixels=config["image"]["max_pixels"],
    conda:
        ENVIRONMENT
    script:
        "../../scripts/galleries.py"
