"""Snakemake script: round-1 points of the pasm_seeded ablation (seeded search, one job)."""
from pasm.jobs import snakemake_job
from pasm.stages import search_shard

with snakemake_job(snakemake):  # noqa: F821 (injected by Snakemake)
    smk = snakemake  # noqa: F821
    search_shard(smk.input.faces, smk.input.model, smk.wildcards.ds, smk.params.cfg, 1, "1-of-1", smk.output[0])
