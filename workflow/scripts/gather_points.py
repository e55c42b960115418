"""Snakemake script: gather and verify the point-search shards."""
from pasm.workflow.jobs import params_of, snakemake_job
from pasm.workflow.stages import gather_points

with snakemake_job(snakemake) as smk:  # noqa: F821 (injected by Snakemake)
    gather_points(shard_paths=list(smk.input.shards), faces_path=smk.input.faces, out_path=smk.output[0],
                  **params_of(smk))
