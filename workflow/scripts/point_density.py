"""Snakemake script: density of one round's mined points over the mean training face."""
from pasm.evaluate.report import point_density_figure
from pasm.workflow.jobs import snakemake_job

with snakemake_job(snakemake) as smk:  # noqa: F821 (injected by Snakemake)
    point_density_figure(faces_path=smk.input.faces, points_path=smk.input.points, dataset=smk.wildcards.ds,
                         rnd=int(smk.wildcards.r), out_png=smk.output[0])
