# Model stages: training and evaluation on the packed images.
#
# images.npy is gathered again whenever audit.shards changes how the packing is split, with the
# same pixels; ancient() keeps that from retraining. The pixels change only through the catalog
# (labels.parquet, an ordinary input) or the `image` settings (a param of train, so a trigger).


if config["model"].get("checkpoint"):

    # model.checkpoint: a model trained elsewhere becomes model/model.pt; nothing is trained.
    rule import_model:
        input:
            checkpoint=config["model"].get("checkpoint") or [],
            images=ancient(res("images/images.npy")),
            labels=res("classes/labels.parquet"),
        output:
            model=res("model/model.pt"),
        log:
            logfile("import_model"),
        conda:
            ENVIRONMENT
        resources:
            **rule_resources("import_model"),
        params:
            model=config["model"],
            pixels=config["image"],
            regression=config["target"].get("task") == "regression",
            reuse=config["reuse"],
        script:
            "../../scripts/import_model.py"

    ruleorder: import_model > train


rule train:
    input:
        images=ancient(res("images/images.npy")),
        labels=res("classes/labels.parquet"),
        weights=config["model"].get("weights") or [],
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
    log:
        logfile("train"),
    benchmark:
        bench("train")
    conda:
        ENVIRONMENT
    threads: workflow.cores
    resources:
        **rule_resources("train", config["train"]["device"]),
    params:
        model=config["model"],
        regression_loss=(config["target"]["loss"] if config["target"]["task"] == "regression" else None),
        train=config["train"],
        pixels=config["image"],
        reuse=config["reuse"],
    script:
        "../../scripts/train.py"


# A regression's predicted against true values (its metrics are in metrics.json).
REGRESSION_OUTPUTS = (
    {
        "scatter": report(
            res("eval/predicted_vs_true.png"),
            caption="../report/predicted_vs_true.rst",
            category="Training",
            labels={"figure": "predicted vs true"},
        )
    }
    if config["target"]["task"] == "regression"
    else {}
)


# Scores the audit pass's predictions: every image goes through the model once.
rule evaluate:
    input:
        audit=AUDIT_PARTS,
        images=ancient(res("images/images.npy")),
        labels=res("classes/labels.parquet"),
    output:
        **REGRESSION_OUTPUTS,
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
    log:
        logfile("evaluate"),
    benchmark:
        bench("evaluate")
    conda:
        ENVIRONMENT
    resources:
        **rule_resources("evaluate"),
    params:
        target=config["target"],
        reuse=config["reuse"],
    script:
        "../../scripts/evaluate.py"
