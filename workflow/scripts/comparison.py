"""Snakemake script: the comparison of every method over seeds (table, CSV, plot)."""
from pasm.evaluate.comparison import write_comparison
from pasm.workflow.jobs import params_of, snakemake_job

with snakemake_job(snakemake) as smk:  # noqa: F821 (injected by Snakemake)
    write_comparison(prediction_paths=list(smk.input), dataset=smk.wildcards.ds, out_md=smk.output.md,
                     out_csv=smk.output.csv, out_png=smk.output.png, **params_of(smk))
