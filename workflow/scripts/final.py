"""Snakemake script: record the final round of a data set in final.json."""
from pasm.workflow.jobs import snakemake_job
from pasm.workflow.rounds import write_final

with snakemake_job(snakemake) as smk:  # noqa: F821 (injected by Snakemake)
    write_final(decision_paths=list(smk.input), out_json=smk.output[0])
