"""Snakemake script: evaluate one round's model."""
from pasm.jobs import snakemake_job
from pasm.stages import evaluate

with snakemake_job(snakemake):  # noqa: F821 (injected by Snakemake)
    smk = snakemake  # noqa: F821
    evaluate(smk.input.faces, smk.input.model, smk.wildcards.ds, smk.params.cfg, int(smk.wildcards.r),
             smk.output.metrics, smk.output.confusion)
