# Data preparation: the generated demo set, and faces.h5 for every data set.

if DEMO_ROOTS:

    rule demo_images:
        """Render the synthetic demo data set (deterministic from its seed)."""
        output:
            manifest="{demo_root}/manifest.csv",
        log:
            "results/logs/demo_images/{demo_root}.log",
        wildcard_constraints:
            demo_root="|".join(re.escape(root) for root in DEMO_ROOTS),
        conda:
            "../envs/pasm.yaml"
        threads: 2
        params:
            seed=demo_setting("seed"),
            per_class=demo_setting("per_class"),
            label_noise=demo_setting("label_noise"),
            image_size=demo_setting("image_size"),
        script:
            "../scripts/stage.py"


rule faces:
    """Read a data set with its reader and write the aligned faces, labels and splits."""
    input:
        source=dataset_source,
    output:
        faces="results/{ds}/faces.h5",
    log:
        "results/{ds}/logs/faces.log",
    benchmark:
        "results/{ds}/benchmarks/faces.tsv"
    wildcard_constraints:
        ds="[A-Za-z0-9_]+",  # shared by the data set's seeds
    conda:
        "../envs/pasm.yaml"
    threads: 1  # MTCNN's many small operations run fastest on one thread
    resources:
        attempt=attempt_number,  # a retry of a job that failed on bad data stops at once
    params:
        fmt=ds_key("format"),
        root=ds_key("root"),
        options=reader_options_of,
        image_size=ds_key("image_size"),
        resize=ds_key("resize"),
        align=ds_key("align"),
        device=CFG["device"],
    script:
        "../scripts/stage.py"
