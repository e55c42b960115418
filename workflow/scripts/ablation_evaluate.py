"""Snakemake script: evaluate one ablation variant's model."""
from pasm.workflow.jobs import params_of, snakemake_job
from pasm.workflow.stages import evaluate

with snakemake_job(snakemake) as smk:  # noqa: F821 (injected by Snakemake)
    evaluate(faces_path=smk.input.faces, model_path=smk.input.model, out_json=smk.output.metrics, out_predictions=smk.output.predictions,
             out_png=smk.output.confusion, dataset=smk.wildcards.ds, rnd=1, **params_of(smk))
