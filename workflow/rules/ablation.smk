# The paper's ablations (Tables 6-7, Figs. 7-8) and the seeded-search variant, each trained like
# PASM round 1 from the same round-0 model: results/{ds}/ablation/{variant}/, then table.md/.csv.
# What each variant is: pasm.workflow.ablation.variant_table; input functions: variants.smk.


rule ablation_seeded_points:
    """Round-1 points from the seeded search (one job) instead of the full DE."""
    input:
        faces=faces_of,
        model="results/{ds}/round0/model.pt",
    output:
        points="results/{ds}/ablation/pasm_seeded/points.h5",
    log:
        "results/{ds}/logs/ablation/pasm_seeded_points.log",
    benchmark:
        "results/{ds}/benchmarks/ablation/pasm_seeded_points.tsv"
    conda:
        "../envs/pasm.yaml"
    threads: CFG["threads"]
    params:
        search=seeded_search_settings,
        train_split=ds_key("train_split"),
        train_subset=ds_key("train_subset"),
        seed=seed_of,
        device=CFG["device"],
    script:
        "../scripts/stage.py"


rule ablation_masked:
    """Masked images of a variant with its own points (pasm_seeded) or its own mask size (mask_size_S)."""
    input:
        faces=faces_of,
        points=variant_points,
    output:
        masked="results/{ds}/ablation/{variant}/masked.h5",
        grid="results/{ds}/ablation/{variant}/masked_examples.png",
    log:
        "results/{ds}/logs/ablation/{variant}_masked.log",
    wildcard_constraints:
        variant=OWN_MASK_VARIANTS,
    conda:
        "../envs/pasm.yaml"
    params:
        mask_size=variant_mask_size,
    script:
        "../scripts/stage.py"


rule ablation_pretrain_cross:
    """Round 0 of the cross-network ablation's second backbone, on the clean images (Eq. 1)."""
    input:
        faces=faces_of,
    output:
        model="results/{ds}/ablation/cross_network/round0/model.pt",
        train_log="results/{ds}/ablation/cross_network/round0/train_log.csv",
    log:
        "results/{ds}/logs/ablation/cross_network_pretrain.log",
    benchmark:
        "results/{ds}/benchmarks/ablation/cross_network_pretrain.tsv"
    conda:
        "../envs/pasm.yaml"
    threads: CFG["threads"]
    params:
        network=method_key("ablation", "cross_network"),
        schedule=ds_key("pretrain"),
        train_split=ds_key("train_split"),
        train_subset=ds_key("train_subset"),
        val_split=ds_key("val_split"),
        seed=seed_of,
        device=CFG["device"],
    script:
        "../scripts/stage.py"


rule ablation_train:
    """One variant, trained with the finetune budget from the round-0 model."""
    input:
        unpack(variant_inputs),
        faces=faces_of,
        round0="results/{ds}/round0/model.pt",
    output:
        model="results/{ds}/ablation/{variant}/model.pt",
        train_log="results/{ds}/ablation/{variant}/train_log.csv",
    log:
        "results/{ds}/logs/ablation/{variant}_train.log",
    benchmark:
        "results/{ds}/benchmarks/ablation/{variant}_train.tsv"
    conda:
        "../envs/pasm.yaml"
    threads: CFG["threads"]
    params:
        spec=variant_params,
        schedule=ds_key("finetune"),
        alpha=variant_alpha,
        beta=variant_beta,
        erasing=variant_erasing,
        train_split=ds_key("train_split"),
        train_subset=ds_key("train_subset"),
        val_split=ds_key("val_split"),
        seed=seed_of,
        device=CFG["device"],
    script:
        "../scripts/stage.py"


rule ablation_evaluate:
    """A variant's model on the validation and evaluation splits, like a round's."""
    input:
        faces=faces_of,
        model="results/{ds}/ablation/{variant}/model.pt",
    output:
        metrics="results/{ds}/ablation/{variant}/metrics.json",
        predictions="results/{ds}/ablation/{variant}/predictions.h5",
        confusion="results/{ds}/ablation/{variant}/confusion.png",
    log:
        "results/{ds}/logs/ablation/{variant}_evaluate.log",
    conda:
        "../envs/pasm.yaml"
    threads: CFG["threads"]
    params:
        val_split=ds_key("val_split"),
        eval_splits=ds_key("eval_splits"),
        device=CFG["device"],
    script:
        "../scripts/stage.py"


rule ablation_table:
    """Our numbers next to the paper's, method by method, with search and training times."""
    input:
        unpack(ablation_table_inputs),
    output:
        md=report("results/{ds}/ablation/table.md", category="Ablations"),
        csv="results/{ds}/ablation/table.csv",
    log:
        "results/{ds}/logs/ablation/table.log",
    conda:
        "../envs/pasm.yaml"
    params:
        fmt=ds_key("format"),
        main_split=ds_key("eval_splits", 0),
        variants=variants_as_params,
    script:
        "../scripts/stage.py"
