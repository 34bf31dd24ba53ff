# Intervention probes, saliency statistics against the object regions, strategy clusters,
# summaries and galleries.


rule regions:
    input:
        images=res("images/part-{shard}.npy"),
        labels=res("classes/labels.parquet"),
        clean=res("catalog/clean.parquet"),
    output:
        part=res("regions/part-{shard}.npy"),
        problems=res("regions/problems-{shard}.csv"),
    log:
        res("logs/regions/{shard}.log"),
    benchmark:
        res("benchmarks/regions/{shard}.tsv")
    wildcard_constraints:
        shard=r"\d+",
    conda:
        ENVIRONMENT
    resources:
        **rule_resources("regions"),
    params:
        shard=lambda wildcards: int(wildcards.shard),
        shards=config["audit"]["shards"],
        region=config["saliency"]["object"],
        max_pixels=config["image"]["max_pixels"],
        mask_files=lambda wildcards: mask_files(),  # an added, removed or replaced mask finds the regions again
    script:
        "../../scripts/regions.py"


rule probes:
    input:
        model=res("model/model.pt"),
        images=res("images/part-{shard}.npy"),
        audit=res("audit/part-{shard}.parquet"),
        regions=res("regions/part-{shard}.npy"),
        region_problems=res("regions/problems-{shard}.csv"),
        labels=res("classes/labels.parquet"),
        clean=res("catalog/clean.parquet"),
    output:
        part=res("probes/part-{shard}.parquet"),
    log:
        res("logs/probes/{shard}.log"),
    benchmark:
        res("benchmarks/probes/{shard}.tsv")
    wildcard_constraints:
        shard=r"\d+",
    conda:
        ENVIRONMENT
    threads: workflow.cores
    resources:
        **rule_resources("probes", config["audit"]["device"]),
    params:
        shard=lambda wildcards: int(wildcards.shard),
        shards=config["audit"]["shards"],
        batch_size=config["audit"]["batch_size"],
        device=config["audit"]["device"],
        settings={
            **{k: v for k, v in config["saliency"]["probes"].items() if k != "min_reliance"},
            "layer": config["audit"]["layer"],
        },
        reuse=config["reuse"],
    script:
        "../../scripts/probes.py"


rule saliency_stats:
    input:
        parts=AUDIT_PARTS,
        probes=PROBE_PARTS,
        regions=REGION_PARTS,
        region_problems=REGION_PROBLEMS,
        index=res("images/index.parquet"),
    output:
        table=res("saliency/localisation.parquet"),
        problems=res("saliency/region_problems.csv"),
    log:
        logfile("saliency_stats"),
    benchmark:
        bench("saliency_stats")
    conda:
        ENVIRONMENT
    resources:
        **rule_resources("saliency_stats"),
    params:
        region=config["saliency"]["object"],
        min_object_energy=config["saliency"]["min_object_energy"],
        min_reliance=config["saliency"]["probes"]["min_reliance"],
        object_classes=config["saliency"].get("object_classes"),
    script:
        "../../scripts/saliency_stats.py"


rule strategy_clusters:
    input:
        parts=AUDIT_PARTS,
        stats=res("saliency/localisation.parquet"),
        images=res("images/images.npy"),
        index=res("images/index.parquet"),
        regions=REGION_PARTS,
        region_problems=REGION_PROBLEMS,
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
    log:
        logfile("strategy_clusters"),
    benchmark:
        bench("strategy_clusters")
    conda:
        ENVIRONMENT
    resources:
        **rule_resources("strategy_clusters"),
    params:
        clusters=config["saliency"]["clusters"],
    script:
        "../../scripts/strategy_clusters.py"


rule score_twins:
    input:
        model=res("model/model.pt"),
        images=res("images/images.npy"),
        index=res("images/index.parquet"),
        twins=res("demo/twins"),
    output:
        table=res("saliency/twins.parquet"),
    log:
        logfile("score_twins"),
    benchmark:
        bench("score_twins")
    conda:
        ENVIRONMENT
    threads: workflow.cores
    resources:
        **rule_resources("score_twins", config["audit"]["device"]),
    params:
        batch_size=config["audit"]["batch_size"],
        device=config["audit"]["device"],
        max_pixels=config["image"]["max_pixels"],
    script:
        "../../scripts/score_twins.py"


rule saliency_summary:
    input:
        stats=res("saliency/localisation.parquet"),
        clusters=res("saliency/clusters.parquet"),
        clean=res("catalog/clean.parquet"),
        # the demo's benchmark scores each image against its twin without off-object sources
        twins=res("saliency/twins.parquet") if SIMULATED else [],
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
    conda:
        ENVIRONMENT
    params:
        truth_column=config["saliency"]["truth_column"],
        min_object_energy=config["saliency"]["min_object_energy"],
        min_reliance=config["saliency"]["probes"]["min_reliance"],
    script:
        "../../scripts/saliency_summary.py"


rule galleries:
    input:
        parts=AUDIT_PARTS,
        stats=res("saliency/stats.parquet"),
        images=res("images/images.npy"),
        index=res("images/index.parquet"),
        regions=REGION_PARTS,
        region_problems=REGION_PROBLEMS,
        clean=res("catalog/clean.parquet"),
        clusters=res("saliency/clusters.csv"),
    output:
        galleries=report(
            directory(res("saliency/galleries")),
            patterns=["{name}.png"],
            caption="../report/galleries.rst",
            category="Saliency",
            labels={"figure": "gallery {name}"},
        ),
    log:
        logfile("galleries"),
    benchmark:
        bench("galleries")
    conda:
        ENVIRONMENT
    resources:
        **rule_resources("galleries"),
    params:
        gallery=config["saliency"]["gallery"],
    script:
        "../../scripts/galleries.py"


rule backgrounds:
    input:
        model=res("model/model.pt"),
        images=res("images/images.npy"),
        index=res("images/index.parquet"),
        regions=REGION_PARTS,
        region_problems=REGION_PROBLEMS,
        labels=res("classes/labels.parquet"),
        clean=res("catalog/clean.parquet"),
    output:
        table=report(
            res("saliency/backgrounds.csv"),
            caption="../report/backgrounds_table.rst",
            category="Saliency",
            labels={"table": "backgrounds (BG-Gap)"},
        ),
        figure=report(
            res("saliency/backgrounds.png"),
            caption="../report/backgrounds.rst",
            category="Saliency",
            labels={"figure": "BG-Gap: objects on other backgrounds"},
        ),
    log:
        logfile("backgrounds"),
    benchmark:
        bench("backgrounds")
    conda:
        ENVIRONMENT
    threads: workflow.cores
    resources:
        **rule_resources("backgrounds", config["audit"]["device"]),
    params:
        batch_size=config["audit"]["batch_size"],
        device=config["audit"]["device"],
        settings={
            **{k: config["saliency"]["probes"][k] for k in ("fill", "dilation", "seed")},
            "layer": config["audit"]["layer"],
        },
        reuse=config["reuse"],
    script:
        "../../scripts/backgrounds.py"
