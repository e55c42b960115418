"""Snakemake script: masked images of an ablation variant (own points or own mask size)."""
from pasm.jobs import snakemake_job
from pasm.stages import make_masked

with snakemake_job(snakemake):  # noqa: F821 (injected by Snakemake)
    smk = snakemake  # noqa: F821
    make_masked(smk.input.faces, smk.input.points, smk.wildcards.ds, smk.params.cfg, 1, smk.output.masked,
                smk.output.grid, size=smk.params.size)
