"""Snakemake script: test one round's model on another data set."""
from pasm.jobs import snakemake_job
from pasm.inference import resolve_device
from pasm.stages import cross_evaluate

with snakemake_job(snakemake):  # noqa: F821 (injected by Snakemake)
    smk = snakemake  # noqa: F821
    cross_evaluate(smk.input.faces, smk.input.model, smk.wildcards.ds, smk.wildcards.target, int(smk.wildcards.r),
                   smk.output.metrics, resolve_device(smk.params.cfg["device"]))
