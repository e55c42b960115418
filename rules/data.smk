# Data preparation: the generated demo set, and faces.h5 for every data set.

if DEMO_ROOTS:

    rule demo_images:
        """Render the synthetic demo data set (deterministic from its seed)."""
        output:
            "{demo_root}/manifest.csv",
        params:
            demo=demo_params,
        threads: 2
        log:
            "results/logs/demo_images/{demo_root}.log",
        wildcard_constraints:
            demo_root="|".join(re.escape(root) for root in DEMO_ROOTS),
        script:
            "../workflow_scripts/demo_images.py"


rule faces:
    """Read a data set with its reader and write the aligned faces, labels and splits."""
    input:
        dataset_source,
    output:
        "results/{ds}/faces.h5",
    params:
        cfg=data_params,
    threads: 1  # MTCNN's many small operations run fastest on one thread
    log:
        "results/{ds}/logs/faces.log",
    benchmark:
        "results/{ds}/benchmarks/faces.tsv"
    script:
        "../workflow_scripts/faces.py"
