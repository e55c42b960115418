"""Snakemake script: test one round's model on another data set."""
from pasm.workflow.jobs import params_of, snakemake_job
from pasm.workflow.stages import cross_evaluate

with snakemake_job(snakemake) as smk:  # noqa: F821 (injected by Snakemake)
    cross_evaluate(target_faces=smk.input.faces, model_path=smk.input.model, out_json=smk.output.metrics, out_predictions=smk.output.predictions,
                   source=smk.wildcards.ds, target=smk.wildcards.target, rnd=int(smk.wildcards.r), **params_of(smk))
