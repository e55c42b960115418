# Sensitive-point search (sharded one-pixel attack), gather, and masked sample generation.


rule search_points:
    """One shard: one-pixel DE attack on a contiguous slice of the training set."""
    input:
        faces="results/{ds}/faces.h5",
        model=previous_model,
    output:
        "results/{ds}/round{r}/points/{scatteritem}.h5",
    params:
        cfg=search_params,
    wildcard_constraints:
        r="[1-9][0-9]*",
    threads: CFG["method"]["search"]["threads"]
    resources:
        gpu=SEARCH_GPUS,  # cap concurrent GPU shards with --resources gpu=<number of GPUs>
    log:
        "results/{ds}/logs/round{r}/search_{scatteritem}.log",
    benchmark:
        "results/{ds}/benchmarks/round{r}/search_{scatteritem}.tsv"
    script:
        "../workflow_scripts/search_points.py"


rule gather_points:
    """Concatenate the shards; fail unless every training image appears exactly once."""
    input:
        shards=gather.search("results/{{ds}}/round{{r}}/points/{scatteritem}.h5"),
        faces="results/{ds}/faces.h5",
    output:
        "results/{ds}/round{r}/points.h5",
    params:
        cfg=search_params,
    log:
        "results/{ds}/logs/round{r}/gather_points.log",
    script:
        "../workflow_scripts/gather_points.py"


rule masked_samples:
    """Mask the S x S patch around each image's point with the point's RGB."""
    input:
        faces="results/{ds}/faces.h5",
        points="results/{ds}/round{r}/points.h5",
    output:
        masked="results/{ds}/round{r}/masked.h5",
        grid=report("results/{ds}/round{r}/masked_examples.png", caption="../report/masked_examples.rst", category="Masked samples", subcategory="{ds}", labels={"round": "{r}"}),
    params:
        cfg=round_params,
    log:
        "results/{ds}/logs/round{r}/masked_samples.log",
    script:
        "../workflow_scripts/masked_samples.py"
