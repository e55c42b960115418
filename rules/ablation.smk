# The paper's ablations (Tables 6-7, Figs. 7-8) and the seeded-search variant, each trained like
# PASM round 1 from the same round-0 model: results/{ds}/ablation/{variant}/, then table.md/.csv.


rule ablation_seeded_points:
    """Round-1 points from the seeded search (one job) instead of the full DE."""
    input:
        faces="results/{ds}/faces.h5",
        model="results/{ds}/round0/model.pt",
    output:
        "results/{ds}/ablation/pasm_seeded/points.h5",
    params:
        cfg=seeded_params,
    threads: CFG["threads"]
    resources:
        gpu=SEARCH_GPUS,
    log:
        "results/{ds}/logs/ablation/pasm_seeded_points.log",
    benchmark:
        "results/{ds}/benchmarks/ablation/pasm_seeded_points.tsv"
    script:
        "../workflow_scripts/ablation_points.py"


rule ablation_masked:
    """Masked images of a variant with its own points (pasm_seeded) or its own mask size (mask_size_S)."""
    input:
        faces="results/{ds}/faces.h5",
        points=ablation_points,
    output:
        masked="results/{ds}/ablation/{variant}/masked.h5",
        grid="results/{ds}/ablation/{variant}/masked_examples.png",
    params:
        cfg=ablation_params,
        size=ablation_mask_size,
    wildcard_constraints:
        variant="pasm_seeded|mask_size_[0-9]+",
    log:
        "results/{ds}/logs/ablation/{variant}_masked.log",
    script:
        "../workflow_scripts/ablation_masked.py"


rule ablation_pretrain_cross:
    """Round 0 of the cross-network ablation's second backbone, on the clean images (Eq. 1)."""
    input:
        faces="results/{ds}/faces.h5",
    output:
        model="results/{ds}/ablation/cross_network/round0/model.pt",
        train_log="results/{ds}/ablation/cross_network/round0/train_log.csv",
    params:
        cfg=ablation_params,
    threads: CFG["threads"]
    log:
        "results/{ds}/logs/ablation/cross_network_pretrain.log",
    benchmark:
        "results/{ds}/benchmarks/ablation/cross_network_pretrain.tsv"
    script:
        "../workflow_scripts/ablation_pretrain.py"


rule ablation_train:
    """One variant, trained with the finetune budget from the round-0 model."""
    input:
        unpack(ablation_inputs),
        faces="results/{ds}/faces.h5",
        round0="results/{ds}/round0/model.pt",
    output:
        model="results/{ds}/ablation/{variant}/model.pt",
        train_log="results/{ds}/ablation/{variant}/train_log.csv",
    params:
        cfg=ablation_params,
    threads: CFG["threads"]
    log:
        "results/{ds}/logs/ablation/{variant}_train.log",
    benchmark:
        "results/{ds}/benchmarks/ablation/{variant}_train.tsv"
    script:
        "../workflow_scripts/ablation_train.py"


rule ablation_evaluate:
    """A variant's model on the validation and evaluation splits, like a round's."""
    input:
        faces="results/{ds}/faces.h5",
        model="results/{ds}/ablation/{variant}/model.pt",
    output:
        metrics="results/{ds}/ablation/{variant}/metrics.json",
        confusion="results/{ds}/ablation/{variant}/confusion.png",
    params:
        cfg=ablation_params,
    threads: CFG["threads"]
    log:
        "results/{ds}/logs/ablation/{variant}_evaluate.log",
    script:
        "../workflow_scripts/ablation_evaluate.py"


rule ablation_table:
    """Our numbers next to the paper's, method by method, with search and training times."""
    input:
        unpack(ablation_table_inputs),
    output:
        md=report("results/{ds}/ablation/table.md", category="Ablations"),
        csv="results/{ds}/ablation/table.csv",
    params:
        cfg=ablation_params,
        variants=ablation_variants,
    log:
        "results/{ds}/logs/ablation/table.log",
    script:
        "../workflow_scripts/ablation_table.py"
