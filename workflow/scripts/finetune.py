"""Snakemake script: distillation fine-tuning of round r on the masked images (Eq. 4)."""
from pasm.workflow.jobs import params_of, snakemake_job
from pasm.workflow.stages import finetune

with snakemake_job(snakemake) as smk:  # noqa: F821 (injected by Snakemake)
    finetune(faces_path=smk.input.faces, masked_path=smk.input.masked, teacher_path=smk.input.teacher,
             out_model=smk.output.model, out_log=smk.output.train_log, dataset=smk.wildcards.ds,
             rnd=int(smk.wildcards.r), **params_of(smk))
