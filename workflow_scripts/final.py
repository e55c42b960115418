"""Snakemake script: record the final round of a data set in final.json."""
from pasm.jobs import snakemake_job
from pasm.rounds import write_final

with snakemake_job(snakemake) as log:  # noqa: F821 (injected by Snakemake)
    smk = snakemake  # noqa: F821
    result = write_final(list(smk.input), smk.output[0])
    log.info("final round %d of %d built (%s)", result["final_round"], result["rounds_built"],
             result["stopped_because"])
