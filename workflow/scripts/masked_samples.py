"""Snakemake script: build the masked (augmented) training set of a round."""
from pasm.workflow.jobs import params_of, snakemake_job
from pasm.workflow.stages import make_masked

with snakemake_job(snakemake) as smk:  # noqa: F821 (injected by Snakemake)
    make_masked(faces_path=smk.input.faces, points_path=smk.input.points, out_h5=smk.output.masked,
                out_png=smk.output.grid, dataset=smk.wildcards.ds, rnd=int(smk.wildcards.r), **params_of(smk))
