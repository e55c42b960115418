# Evaluation of every round's model on the validation and evaluation splits and named subsets,
# the pictures and tables of Snakemake's report (snakemake --report report.html), and the
# density of each round's mined points.


rule evaluate:
    """Accuracy, mean class accuracy, precision/recall/F1 and confusion matrices per split and subset."""
    input:
        faces=faces_of,
        model=round_model,
        earlier=earlier_metrics,
        earlier_cross=earlier_cross_metrics,
        cross=cross_metrics,
        density=round_point_density,
    output:
        metrics="results/{ds}/round{r}/metrics.json",
        predictions="results/{ds}/round{r}/predictions.h5",
        confusion=report(
            "results/{ds}/round{r}/confusion.png",
            caption="../report/confusion.rst",
            category="Confusion matrices",
            subcategory="{ds}",
            labels={"round": "{r}"},
        ),
        rounds_png=report(
            "results/{ds}/round{r}/accuracy_per_round.png",
            caption="../report/accuracy_per_round.rst",
            category="Accuracy per round",
            subcategory="{ds}",
            labels={"rounds": "0-{r}"},
        ),
        rounds_html=report(
            "results/{ds}/round{r}/accuracy_per_round.html",
            caption="../report/accuracy_table.rst",
            category="Metric tables",
            subcategory="{ds}",
            labels={"round": "{r}", "table": "scores of rounds 0-{r}"},
        ),
        round_html=report(
            "results/{ds}/round{r}/metrics.html",
            caption="../report/metrics_table.rst",
            category="Metric tables",
            subcategory="{ds}",
            labels={"round": "{r}", "table": "per class, round {r}"},
        ),
    log:
        "results/{ds}/logs/round{r}/evaluate.log",
    conda:
        "../envs/pasm.yaml"
    threads: CFG["threads"]
    params:
        val_split=ds_key("val_split"),
        eval_splits=ds_key("eval_splits"),
        device=CFG["device"],
    script:
        "../scripts/stage.py"


rule cross_evaluate:
    """A round's model tested on another data set, over the classes both share."""
    input:
        faces="results/{target}/faces.h5",
        model=round_model,
    output:
        metrics="results/{ds}/round{r}/cross/{target}/metrics.json",
        predictions="results/{ds}/round{r}/cross/{target}/predictions.h5",
    log:
        "results/{ds}/logs/round{r}/cross_{target}.log",
    wildcard_constraints:
        target="[A-Za-z0-9_]+",
    conda:
        "../envs/pasm.yaml"
    threads: CFG["threads"]
    params:
        device=CFG["device"],
    script:
        "../scripts/stage.py"


checkpoint round_decision:
    """After round r is evaluated: build round r+1? (fixed rounds, or rounds: auto on validation accuracy)"""
    input:
        metrics=metrics_so_far,
    output:
        decision="results/{ds}/rounds/decision{r}.json",
    log:
        "results/{ds}/logs/round{r}/decision.log",
    conda:
        "../envs/pasm.yaml"
    params:
        val_split=decision_split,
        rounds=method_key("rounds"),
        max_rounds=method_key("max_rounds"),
        margin=method_key("auto_margin"),
    script:
        "../scripts/stage.py"


rule final:
    """The rounds built (until the decision says stop) and the final round and its model, in final.json."""
    input:
        decisions=decided_rounds,
        models=decided_models,
    output:
        final="results/{ds}/final.json",
    log:
        "results/{ds}/logs/final.log",
    conda:
        "../envs/pasm.yaml"
    script:
        "../scripts/stage.py"


rule point_density:
    """Where round r's mined points fall: smoothed density over the mean training face, per class."""
    input:
        faces=faces_of,
        points="results/{ds}/round{r}/points.h5",
    output:
        density=report(
            "results/{ds}/round{r}/point_density.png",
            caption="../report/point_density.rst",
            category="Mined points",
            subcategory="{ds}",
            labels={"round": "{r}"},
        ),
    log:
        "results/{ds}/logs/round{r}/point_density.log",
    wildcard_constraints:
        r="[1-9][0-9]*",
    conda:
        "../envs/pasm.yaml"
    script:
        "../scripts/stage.py"


rule comparison:
    """Every method of the run (rounds 0..R, ablation variants) over seeds, with paired statistics."""
    input:
        predictions=comparison_inputs,
    output:
        md=report("results/{ds}/comparison.md", category="Comparison over seeds"),
        csv="results/{ds}/comparison.csv",
        png=report(
            "results/{ds}/comparison.png",
            caption="../report/comparison.rst",
            category="Comparison over seeds",
        ),
    log:
        "results/{ds}/logs/comparison.log",
    wildcard_constraints:
        ds="[A-Za-z0-9_]+",
    conda:
        "../envs/pasm.yaml"
    params:
        methods=comparison_methods,
        seeds=comparison_seeds,
        references=["round0", "random_erasing"],
        main_split=ds_key("eval_splits", 0),
        n_boot=2000,
    script:
        "../scripts/stage.py"
