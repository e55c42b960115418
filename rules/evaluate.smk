# Evaluation of every round's model on the validation and evaluation splits.


rule evaluate:
    """Accuracy, mean class accuracy, per-class accuracy and confusion matrix per split."""
    input:
        faces="results/{ds}/faces.h5",
        model=round_model,
        earlier=previous_metrics,
        cross=cross_metrics,
    output:
        metrics="results/{ds}/round{r}/metrics.json",
        confusion=report("results/{ds}/round{r}/confusion.png", category="Confusion matrices"),
    params:
        cfg=train_params,
    threads: CFG["threads"]
    log:
        "results/{ds}/logs/round{r}/evaluate.log",
    script:
        "../workflow_scripts/evaluate.py"


rule cross_evaluate:
    """A round's model tested on another data set, over the classes both share."""
    input:
        faces="results/{target}/faces.h5",
        model=round_model,
    output:
        metrics="results/{ds}/round{r}/cross/{target}/metrics.json",
    params:
        cfg=train_params,
    wildcard_constraints:
        target="[A-Za-z0-9_]+",
    threads: CFG["threads"]
    log:
        "results/{ds}/logs/round{r}/cross_{target}.log",
    script:
        "../workflow_scripts/cross_evaluate.py"


checkpoint round_decision:
    """After round r is evaluated: build round r+1? (fixed rounds, or rounds: auto on validation accuracy)"""
    input:
        metrics=metrics_so_far,
    output:
        "results/{ds}/rounds/decision{r}.json",
    params:
        val_split=val_split_of,
        rounds=CFG["method"]["rounds"],
        max_rounds=CFG["method"]["max_rounds"],
        margin=CFG["method"]["auto_margin"],
    log:
        "results/{ds}/logs/round{r}/decision.log",
    script:
        "../workflow_scripts/round_decision.py"


rule final:
    """The rounds built (until the decision says stop) and the final round, in final.json."""
    input:
        decided_rounds,
    output:
        "results/{ds}/final.json",
    log:
        "results/{ds}/logs/final.log",
    script:
        "../workflow_scripts/final.py"
