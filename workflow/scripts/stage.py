"""Snakemake script of every rule: the stage function named after the rule (pasm.workflow.run)."""

from pasm.workflow.run import run_stage

run_stage(snakemake)  # noqa: F821 (injected by Snakemake)
