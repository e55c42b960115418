"""Snakemake script: render the synthetic demo data set."""
from pasm.jobs import snakemake_job
from pasm.stages import make_demo

with snakemake_job(snakemake) as log:  # noqa: F821 (injected by Snakemake)
    out = snakemake.output[0]  # noqa: F821
    make_demo(out.rsplit("/", 1)[0], snakemake.params.demo["demo"], snakemake.params.demo["image_size"])  # noqa: F821
    log.info("wrote %s", out)
