"""Snakemake script: evaluate one round's model and draw its report pictures and tables."""
from pasm.jobs import snakemake_job
from pasm.stages import evaluate

with snakemake_job(snakemake):  # noqa: F821 (injected by Snakemake)
    smk = snakemake  # noqa: F821
    evaluate(smk.input.faces, smk.input.model, smk.wildcards.ds, smk.params.cfg, int(smk.wildcards.r),
             smk.output.metrics, smk.output.confusion, cross_paths=smk.input.cross,
             out_rounds_png=smk.output.rounds_png, out_rounds_html=smk.output.rounds_html,
             out_round_html=smk.output.round_html)
