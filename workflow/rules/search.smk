# Sensitive-point search (sharded one-pixel attack), gather, and masked sample generation.


rule search_points:
    """One shard: the one-pixel attack on a contiguous slice of the training set."""
    input:
        faces=faces_of,
        model=previous_model,
    output:
        points="results/{ds}/round{r}/points/{scatteritem}.h5",
    log:
        "results/{ds}/logs/round{r}/search_{scatteritem}.log",
    benchmark:
        "results/{ds}/benchmarks/round{r}/search_{scatteritem}.tsv"
    wildcard_constraints:
        r="[1-9][0-9]*",
    conda:
        "../envs/pasm.yaml"
    threads: CFG["method"]["search"]["threads"]
    params:
        search=search_settings(),
        train_split=ds_key("train_split"),
        train_subset=ds_key("train_subset"),
        seed=seed_of,
        device=CFG["device"],
    script:
        "../scripts/stage.py"


rule gather_points:
    """Concatenate the shards; fail unless every training image appears exactly once."""
    input:
        shards=gather.search("results/{{ds}}/round{{r}}/points/{scatteritem}.h5"),
        faces=faces_of,
    output:
        points="results/{ds}/round{r}/points.h5",
    log:
        "results/{ds}/logs/round{r}/gather_points.log",
    conda:
        "../envs/pasm.yaml"
    params:
        train_split=ds_key("train_split"),
        train_subset=ds_key("train_subset"),
        seed=seed_of,
    script:
        "../scripts/stage.py"


rule masked_samples:
    """Mask the S x S patch around each image's point with the point's RGB."""
    input:
        faces=faces_of,
        points="results/{ds}/round{r}/points.h5",
    output:
        masked="results/{ds}/round{r}/masked.h5",
        grid=report(
            "results/{ds}/round{r}/masked_examples.png",
            caption="../report/masked_examples.rst",
            category="Masked samples",
            subcategory="{ds}",
            labels={"round": "{r}"},
        ),
    log:
        "results/{ds}/logs/round{r}/masked_samples.log",
    conda:
        "../envs/pasm.yaml"
    params:
        mask_size=mask_size_of,
    script:
        "../scripts/stage.py"
