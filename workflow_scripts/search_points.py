"""Snakemake script: one shard of the sensitive-point search."""
from pasm.jobs import snakemake_job
from pasm.stages import search_shard

with snakemake_job(snakemake):  # noqa: F821 (injected by Snakemake)
    smk = snakemake  # noqa: F821
    search_shard(smk.input.faces, smk.input.model, smk.wildcards.ds, smk.params.cfg, int(smk.wildcards.r),
                 smk.wildcards.scatteritem, smk.output[0])
