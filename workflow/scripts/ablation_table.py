"""Snakemake script: the ablation table next to the paper's numbers."""
from pasm.workflow.ablation import make_ablation_table
from pasm.workflow.jobs import params_of, snakemake_job

with snakemake_job(snakemake) as smk:  # noqa: F821 (injected by Snakemake)
    make_ablation_table(dataset=smk.wildcards.ds, metrics=list(smk.input.metrics), models=list(smk.input.models),
                        points=list(smk.input.points), out_md=smk.output.md, out_csv=smk.output.csv,
                        **params_of(smk))
