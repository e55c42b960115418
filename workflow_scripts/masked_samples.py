"""Snakemake script: build the masked (augmented) training set of a round."""
from pasm.jobs import snakemake_job
from pasm.stages import make_masked

with snakemake_job(snakemake):  # noqa: F821 (injected by Snakemake)
    smk = snakemake  # noqa: F821
    make_masked(smk.input.faces, smk.input.points, smk.wildcards.ds, smk.params.cfg, int(smk.wildcards.r),
                smk.output.masked, smk.output.grid)
