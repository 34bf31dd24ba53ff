# Data stages: demo simulation, catalog validation, class binning, image packing.


rule simulate_demo:
    output:
        catalog=res("demo/catalog.csv"),
        images=directory(res("demo/images")),
        masks=directory(res("demo/masks")),
        preview=report(
            res("demo/preview.png"),
            caption="../report/demo_preview.rst",
            category="Data",
            labels={"figure": "demo galaxies"},
        ),
    resources:
        **rule_resources("simulate_demo"),
    log:
        logfile("simulate_demo"),
    benchmark:
        bench("simulate_demo")
    params:
        demo=config["demo"],
        target=config["target"],
    threads: workflow.cores
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
    params:
        id_column=config["id_column"],
        images=lambda wildcards: config["images"],  # keep {id} unexpanded
        target=config["target"],
        max_pixels=config["image"]["max_pixels"],
    threads: 2
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
    params:
        target=config["target"],
        split=config["split"],
    script:
        "../../scripts/bin_classes.py"


rule pack_images:
    input:
        clean=res("catalog/clean.parquet"),
        labels=res("classes/labels.parquet"),
    output:
        images=res("images/images.npy"),
        index=res("images/index.parquet"),
    resources:
        **rule_resources("pack_images"),
    log:
        logfile("pack_images"),
    benchmark:
        bench("pack_images")
    params:
        size=config["image"]["size"],
        max_pixels=config["image"]["max_pixels"],
    threads: workflow.cores
    script:
        "../../scripts/pack_images.py"
