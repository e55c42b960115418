"""Snakemake script: distillation fine-tuning of round r on the masked images (Eq. 4)."""
from pasm.jobs import snakemake_job
from pasm.stages import finetune

with snakemake_job(snakemake):  # noqa: F821 (injected by Snakemake)
    smk = snakemake  # noqa: F821
    finetune(smk.input.faces, smk.input.masked, smk.input.teacher, smk.wildcards.ds, smk.params.cfg,
             int(smk.wildcards.r), smk.output.model, smk.output.train_log)
