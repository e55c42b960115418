"""Snakemake script: evaluate one ablation variant's model."""
from pasm.jobs import snakemake_job
from pasm.stages import evaluate

with snakemake_job(snakemake):  # noqa: F821 (injected by Snakemake)
    smk = snakemake  # noqa: F821
    evaluate(smk.input.faces, smk.input.model, smk.wildcards.ds, smk.params.cfg, 1, smk.output.metrics,
             smk.output.confusion)
