"""Snakemake script: decide whether the next PASM round is built."""
from pasm.jobs import snakemake_job
from pasm.rounds import write_decision

with snakemake_job(snakemake) as log:  # noqa: F821 (injected by Snakemake)
    smk = snakemake  # noqa: F821
    p = smk.params
    result = write_decision(smk.input.metrics, p.val_split, p.rounds, p.max_rounds, p.margin, smk.output[0])
    log.info("round %d: %s (%s)", result["round"], "continue" if result["continue"] else "stop", result["reason"])
