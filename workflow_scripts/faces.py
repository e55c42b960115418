"""Snakemake script: read a data set and write faces.h5."""
from pasm.jobs import snakemake_job
from pasm.stages import make_faces

with snakemake_job(snakemake):  # noqa: F821 (injected by Snakemake)
    make_faces(snakemake.wildcards.ds, snakemake.params.cfg["datasets"][snakemake.wildcards.ds], snakemake.output[0])  # noqa: F821
