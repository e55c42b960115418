"""Snakemake script: read a data set, align or resize its faces, and write faces.h5."""
from pasm.workflow.jobs import params_of, snakemake_job
from pasm.workflow.stages import make_faces

with snakemake_job(snakemake) as smk:  # noqa: F821 (injected by Snakemake)
    make_faces(dataset=smk.wildcards.ds, out_path=smk.output[0], **params_of(smk))
