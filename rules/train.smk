# Training: round 0 pretraining (Eq. 1) and round r >= 1 distillation fine-tuning (Eq. 4).


rule pretrain:
    """Round 0: train the backbone on the clean training images with cross-entropy."""
    input:
        faces="results/{ds}/faces.h5",
    output:
        model="results/{ds}/round0/model.pt",
        train_log="results/{ds}/round0/train_log.csv",
    params:
        cfg=train_params,
    threads: CFG["threads"]
    log:
        "results/{ds}/logs/round0/pretrain.log",
    benchmark:
        "results/{ds}/benchmarks/round0/pretrain.tsv"
    script:
        "../workflow_scripts/pretrain.py"


rule finetune:
    """Round r: the student (starting from round r-1's model) learns from the masked images."""
    input:
        faces="results/{ds}/faces.h5",
        masked="results/{ds}/round{r}/masked.h5",
        teacher=previous_model,
    output:
        model="results/{ds}/round{r}/model.pt",
        train_log="results/{ds}/round{r}/train_log.csv",
    params:
        cfg=finetune_params,
    wildcard_constraints:
        r="[1-9][0-9]*",
    threads: CFG["threads"]
    log:
        "results/{ds}/logs/round{r}/finetune.log",
    benchmark:
        "results/{ds}/benchmarks/round{r}/finetune.tsv"
    script:
        "../workflow_scripts/finetune.py"
