# Evaluation of every round's model on the validation and evaluation splits.


rule evaluate:
    """Accuracy, mean class accuracy, per-class accuracy and confusion matrix per split."""
    input:
        faces="results/{ds}/faces.h5",
        model=round_model,
        earlier=previous_metrics,
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
