"""Snakemake script: gather and verify the point-search shards."""
from pasm.jobs import snakemake_job
from pasm.stages import gather_points

with snakemake_job(snakemake):  # noqa: F821 (injected by Snakemake)
    smk = snakemake  # noqa: F821
    gather_points(list(smk.input.shards), smk.input.faces, smk.wildcards.ds, smk.params.cfg, smk.output[0])
