"""Snakemake script: one shard of the sensitive-point search."""
from pasm.workflow.jobs import gpu_resources, params_of, snakemake_job
from pasm.workflow.stages import search_shard

with snakemake_job(snakemake) as smk:  # noqa: F821 (injected by Snakemake)
    search_shard(faces_path=smk.input.faces, model_path=smk.input.model, out_path=smk.output[0],
                 scatteritem=smk.wildcards.scatteritem, rnd=int(smk.wildcards.r), **gpu_resources(smk),
                 **params_of(smk))
