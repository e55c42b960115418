"""Snakemake script: decide whether the next PASM round is built."""
from pasm.workflow.jobs import params_of, snakemake_job
from pasm.workflow.rounds import write_decision

with snakemake_job(snakemake) as smk:  # noqa: F821 (injected by Snakemake)
    write_decision(metrics_paths=list(smk.input.metrics), out_json=smk.output[0], **params_of(smk))
