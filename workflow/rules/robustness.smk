# Robustness of every compared method (rounds, ablation variants): its predictions on corrupted
# copies of the evaluation splits, a one-pixel attack on a fixed sample of the main test split, and
# the table over seeds, results/{ds}/robustness.* beside comparison.* (docs/robustness.md).


wildcard_constraints:
    method="round[0-9]+|ablation/[A-Za-z0-9_.]+",
    attack="[A-Za-z0-9_]+",


rule robustness_corruptions:
    """A model's predicted classes on corrupted copies of every evaluation split's faces."""
    input:
        faces=faces_of,
        model=method_model,
    output:
        corruptions="results/{ds}/{method}/robustness/corruptions.h5",
    log:
        "results/{ds}/logs/{method}/robustness_corruptions.log",
    benchmark:
        "results/{ds}/benchmarks/{method}/robustness_corruptions.tsv"
    conda:
        "../envs/pasm.yaml"
    threads: CFG["threads"]
    params:
        eval_splits=ds_key("eval_splits"),
        robustness=corruption_settings,
        device=CFG["device"],
    script:
        "../scripts/stage.py"


rule robustness_attack:
    """A one-pixel attack (the project's point search at a fixed budget) on a sample of the main test split."""
    input:
        faces=faces_of,
        model=method_model,
    output:
        attack="results/{ds}/{method}/robustness/attack_{attack}.h5",
    log:
        "results/{ds}/logs/{method}/robustness_attack_{attack}.log",
    benchmark:
        "results/{ds}/benchmarks/{method}/robustness_attack_{attack}.tsv"
    conda:
        "../envs/pasm.yaml"
    threads: attack_threads
    params:
        attack_name=lambda wildcards: wildcards.attack,
        split=ds_key("eval_splits", 0),
        n_faces=CFG["robustness"]["attack_faces"],
        search=attack_search,
        seed=CFG["robustness"]["seed"],
        device=CFG["device"],
    script:
        "../scripts/stage.py"


rule robustness:
    """Every compared method over seeds: clean, corrupted and attacked accuracy with paired statistics."""
    input:
        unpack(training_inputs),
        predictions=comparison_inputs,
        corruptions=method_files("robustness/corruptions.h5"),
        attacks=attack_inputs,
        faces=faces_of,
    output:
        md=report("results/{ds}/robustness.md", category="Robustness over seeds"),
        csv="results/{ds}/robustness.csv",
        png=report(
            "results/{ds}/robustness.png",
            caption="../report/robustness.rst",
            category="Robustness over seeds",
        ),
        examples=report(
            "results/{ds}/robustness_examples.png",
            caption="../report/robustness_examples.rst",
            category="Robustness over seeds",
        ),
    log:
        "results/{ds}/logs/robustness.log",
    wildcard_constraints:
        ds="[A-Za-z0-9_]+",
    conda:
        "../envs/pasm.yaml"
    params:
        methods=comparison_methods,
        seeds=comparison_seeds,
        references=["round0", "random_erasing"],
        attack_names=list(CFG["robustness"]["attacks"]),
        main_split=ds_key("eval_splits", 0),
        robustness=corruption_settings,
        n_boot=2000,
    script:
        "../scripts/stage.py"
