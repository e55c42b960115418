"""Snakemake script: round 0 pretraining with cross-entropy."""
from pasm.jobs import snakemake_job
from pasm.stages import pretrain

with snakemake_job(snakemake):  # noqa: F821 (injected by Snakemake)
    smk = snakemake  # noqa: F821
    pretrain(smk.input.faces, smk.wildcards.ds, smk.params.cfg, smk.output.model, smk.output.train_log)
