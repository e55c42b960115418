"""Snakemake script: evaluate one round's model and draw its report pictures and tables."""
from pasm.workflow.jobs import params_of, snakemake_job
from pasm.workflow.stages import evaluate

with snakemake_job(snakemake) as smk:  # noqa: F821 (injected by Snakemake)
    evaluate(faces_path=smk.input.faces, model_path=smk.input.model, out_json=smk.output.metrics, out_predictions=smk.output.predictions,
             out_png=smk.output.confusion, dataset=smk.wildcards.ds, rnd=int(smk.wildcards.r),
             cross_paths=list(smk.input.cross), out_rounds_png=smk.output.rounds_png,
             out_rounds_html=smk.output.rounds_html, out_round_html=smk.output.round_html, **params_of(smk))
