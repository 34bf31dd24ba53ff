# Data stages: demo simulation, catalog validation, class binning, image packing (scattered, gathered).


rule simulate_demo:
    output:
        catalog=res("demo/catalog.csv"),
        images=directory(res("demo/images")),
        masks=directory(res("demo/masks")),
        twins=directory(res("demo/twins")),
        preview=report(
            res("demo/preview.png"),
            caption="../report/demo_preview.rst",
            category="Data",
            labels={"figure": "demo galaxies"},
        ),
    log:
        logfile("simulate_demo"),
    benchmark:
        bench("simulate_demo")
    conda:
        ENVIRONMENT
    threads: workflow.cores
    resources:
        **rule_resources("simulate_demo"),
    params:
        demo=config["demo"],
        target=config["target"],
    script:
        "../../scripts/simulate_demo.py"


rule validate_catalog:
    input:
        catalog=config["catalog"],
    output:
        integrity=report(
            res("catalog/integrity.csv"),
            caption="../report/integrity.rst",
            category="Data",
            labels={"table": "integrity problems"},
        ),
        clean=res("catalog/clean.parquet"),
    log:
        logfile("validate_catalog"),
    benchmark:
        bench("validate_catalog")
    conda:
        ENVIRONMENT
    threads: 2
    params:
        id_column=config["id_column"],
        images=lambda wildcards: config["images"],  # keep {id} unexpanded
        image_files=lambda wildcards: image_files(),  # a new, missing or replaced image reruns validation
        delimiter=config["catalog_delimiter"],
        target=config["target"],
        truth_column=config["saliency"]["truth_column"],
        region=config["saliency"]["object"],
        nsigma=config["saliency"]["object"]["nsigma"],  # the threshold segmentation of the cut-object check
        size=config["image"]["size"],
        max_pixels=config["image"]["max_pixels"],
        pixels=DECODING,
    script:
        "../../scripts/validate_catalog.py"


rule bin_classes:
    input:
        clean=res("catalog/clean.parquet"),
    output:
        labels=res("classes/labels.parquet"),
        counts=report(
            res("classes/class_counts.csv"),
            caption="../report/class_counts.rst",
            category="Data",
            labels={"table": "class counts"},
        ),
        histogram=report(
            res("classes/target_histogram.png"),
            caption="../report/target_histogram.rst",
            category="Data",
            labels={"figure": "target histogram"},
        ),
    log:
        logfile("bin_classes"),
    conda:
        ENVIRONMENT
    params:
        target=config["target"],
        split=config["split"],
        shards=config["audit"]["shards"],
        components=config["pca"]["components"],
    script:
        "../../scripts/bin_classes.py"


rule pack_images:
    input:
        clean=res("catalog/clean.parquet"),
        labels=res("classes/labels.parquet"),
    output:
        part=res("images/part-{shard}.npy"),
    log:
        res("logs/pack_images/{shard}.log"),
    benchmark:
        res("benchmarks/pack_images/{shard}.tsv")
    wildcard_constraints:
        shard=r"\d+",
    conda:
        ENVIRONMENT
    threads: workflow.cores
    resources:
        **rule_resources("pack_images"),
    params:
        shard=lambda wildcards: int(wildcards.shard),
        shards=config["audit"]["shards"],
        size=config["image"]["size"],
        max_pixels=config["image"]["max_pixels"],
        pixels=DECODING,
    script:
        "../../scripts/pack_images.py"


rule gather_images:
    input:
        parts=PACKED_PARTS,
        labels=res("classes/labels.parquet"),
    output:
        images=res("images/images.npy"),
        index=res("images/index.parquet"),
    log:
        logfile("gather_images"),
    benchmark:
        bench("gather_images")
    conda:
        ENVIRONMENT
    resources:
        **rule_resources("gather_images"),
    script:
        "../../scripts/gather_images.py"


rule near_duplicates:
    input:
        images=res("images/images.npy"),
        labels=res("classes/labels.parquet"),
    output:
        table=report(
            res("catalog/near_duplicates.csv"),
            caption="../report/near_duplicates.rst",
            category="Data",
            labels={"table": "near-duplicate pairs"},
        ),
    log:
        logfile("near_duplicates"),
    benchmark:
        bench("near_duplicates")
    conda:
        ENVIRONMENT
    resources:
        **rule_resources("near_duplicates"),
    params:
        max_distance=config["split"]["near_duplicate_distance"],
    script:
        "../../scripts/near_duplicates.py"
