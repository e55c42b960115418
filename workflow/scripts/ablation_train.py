"""Snakemake script: train one ablation variant from the round-0 model."""
from pasm.workflow.ablation import train_variant
from pasm.workflow.jobs import params_of, snakemake_job

with snakemake_job(snakemake) as smk:  # noqa: F821 (injected by Snakemake)
    train_variant(faces_path=smk.input.faces, round0_path=smk.input.round0, out_model=smk.output.model,
                  out_log=smk.output.train_log, dataset=smk.wildcards.ds, masked_path=smk.input.get("masked"),
                  init_path=smk.input.get("init"), **params_of(smk))
