"""Snakemake script: round 0 pretraining with cross-entropy (also the cross-network ablation's second backbone)."""
from pasm.workflow.jobs import params_of, snakemake_job
from pasm.workflow.stages import pretrain

with snakemake_job(snakemake) as smk:  # noqa: F821 (injected by Snakemake)
    pretrain(faces_path=smk.input.faces, out_model=smk.output.model, out_log=smk.output.train_log,
             dataset=smk.wildcards.ds, **params_of(smk))
