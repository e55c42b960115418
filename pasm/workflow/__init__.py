"""The workflow layer: config validation, one function per Snakemake stage, ablations, rounds and job
glue (imports every lower layer)."""
