"""Snakemake script: render the synthetic demo data set."""
from pasm.workflow.jobs import snakemake_job
from pasm.workflow.stages import make_demo

with snakemake_job(snakemake) as smk:  # noqa: F821 (injected by Snakemake)
    make_demo(root=smk.output[0].rsplit("/", 1)[0], **smk.params.settings)
