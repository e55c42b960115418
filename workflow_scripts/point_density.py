"""Snakemake script: density of one round's mined points over the mean training face."""
from pasm.jobs import snakemake_job
from pasm.report import point_density_figure

with snakemake_job(snakemake):  # noqa: F821 (injected by Snakemake)
    smk = snakemake  # noqa: F821
    point_density_figure(smk.input.faces, smk.input.points, smk.wildcards.ds, int(smk.wildcards.r), smk.output[0])
