"""Snakemake script: train one ablation variant from the round-0 model."""
from pasm.ablation import train_variant
from pasm.jobs import snakemake_job

with snakemake_job(snakemake):  # noqa: F821 (injected by Snakemake)
    smk = snakemake  # noqa: F821
    train_variant(smk.wildcards.variant, smk.input.faces, smk.input.round0, smk.wildcards.ds, smk.params.cfg,
                  smk.output.model, smk.output.train_log, masked_path=smk.input.get("masked"),
                  init_path=smk.input.get("init"))
