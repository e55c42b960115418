"""Snakemake script: round-1 points of the pasm_seeded ablation (seeded search, one job)."""
from pasm.workflow.jobs import gpu_resources, params_of, snakemake_job
from pasm.workflow.stages import search_shard

with snakemake_job(snakemake) as smk:  # noqa: F821 (injected by Snakemake)
    search_shard(faces_path=smk.input.faces, model_path=smk.input.model, out_path=smk.output[0],
                 scatteritem="1-of-1", rnd=1, **gpu_resources(smk), **params_of(smk))
