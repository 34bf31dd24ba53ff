# Model stages: training and evaluation on the packed images.


rule train:
    input:
        images=res("images/images.npy"),
        labels=res("classes/labels.parquet"),
    output:
        model=res("model/model.pt"),
        history=report(
            res("model/history.csv"),
            caption="../report/history.rst",
            category="Training",
            labels={"table": "history"},
        ),
        curve=report(
            res("model/training_curve.png"),
            caption="../report/training_curve.rst",
            category="Training",
            labels={"figure": "training curve"},
        ),
    resources:
        **rule_resources("train", config["train"]["device"]),
    log:
        logfile("train"),
    benchmark:
        bench("train")
    params:
        model=config["model"],
        train=config["train"],
    threads: workflow.cores
    script:
        "../../scripts/train.py"


rule evaluate:
    input:
        model=res("model/model.pt"),
        images=res("images/images.npy"),
        labels=res("classes/labels.parquet"),
    output:
        predictions=res("eval/predictions.parquet"),
        metrics=report(
            res("eval/metrics.json"),
            caption="../report/metrics.rst",
            category="Training",
            labels={"table": "metrics"},
        ),
        confusion=report(
            res("eval/confusion_matrix.png"),
            caption="../report/confusion_matrix.rst",
            category="Training",
            labels={"figure": "confusion matrix"},
        ),
        roc=report(
            res("eval/roc_curve.png"),
            caption="../report/roc_curve.rst",
            category="Training",
            labels={"figure": "ROC curve"},
        ),
        top_losses=report(
            res("eval/top_losses.png"),
            caption="../report/top_losses.rst",
            category="Training",
            labels={"figure": "top losses"},
        ),
    resources:
        **rule_resources("evaluate", config["train"]["device"]),
    log:
        logfile("evaluate"),
    benchmark:
        bench("evaluate")
    params:
        device=config["train"]["device"],
        batch_size=config["audit"]["batch_size"],
        target_column=config["target"]["column"],
    threads: workflow.cores
    script:
        "../../scripts/evaluate.py"
