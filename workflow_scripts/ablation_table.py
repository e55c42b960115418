"""Snakemake script: the ablation table next to the paper's numbers."""
from pasm.ablation import make_ablation_table
from pasm.jobs import snakemake_job

with snakemake_job(snakemake):  # noqa: F821 (injected by Snakemake)
    smk = snakemake  # noqa: F821
    make_ablation_table(smk.wildcards.ds, smk.params.cfg, smk.params.variants, smk.input.metrics,
                        smk.input.models, smk.input.points, smk.output.md, smk.output.csv)
