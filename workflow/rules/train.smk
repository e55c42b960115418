# Training: round 0 pretraining (Eq. 1) and round r >= 1 distillation fine-tuning (Eq. 4).


rule pretrain:
    """Round 0: train the backbone on the clean training images with cross-entropy."""
    input:
        faces=faces_of,
    output:
        model="results/{ds}/round0/model.pt",
        train_log="results/{ds}/round0/train_log.csv",
    log:
        "results/{ds}/logs/round0/pretrain.log",
    benchmark:
        "results/{ds}/benchmarks/round0/pretrain.tsv"
    conda:
        "../envs/pasm.yaml"
    threads: CFG["threads"]
    params:
        network=ds_key("model"),
        schedule=ds_key("pretrain"),
        train_split=ds_key("train_split"),
        train_subset=ds_key("train_subset"),
        val_split=ds_key("val_split"),
        seed=seed_of,
        device=CFG["device"],
    script:
        "../scripts/stage.py"


rule finetune:
    """Round r: the student (starting from round r-1's model) learns from the masked images."""
    input:
        faces=faces_of,
        masked="results/{ds}/round{r}/masked.h5",
        teacher=previous_model,
    output:
        model="results/{ds}/round{r}/model.pt",
        train_log="results/{ds}/round{r}/train_log.csv",
    log:
        "results/{ds}/logs/round{r}/finetune.log",
    benchmark:
        "results/{ds}/benchmarks/round{r}/finetune.tsv"
    wildcard_constraints:
        r="[1-9][0-9]*",
    conda:
        "../envs/pasm.yaml"
    threads: CFG["threads"]
    params:
        schedule=ds_key("finetune"),
        alpha=method_key("alpha"),
        beta=method_key("beta"),
        val_split=ds_key("val_split"),
        seed=seed_of,
        device=CFG["device"],
    script:
        "../scripts/stage.py"
