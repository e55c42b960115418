"""Snakemake script: read a data set, align or resize its faces, and write faces.h5."""
from pasm.jobs import snakemake_job
from pasm.inference import resolve_device
from pasm.stages import make_faces

with snakemake_job(snakemake):  # noqa: F821 (injected by Snakemake)
    smk = snakemake  # noqa: F821
    cfg = smk.params.cfg
    make_faces(smk.wildcards.ds, cfg["datasets"][smk.wildcards.ds], smk.output[0], resolve_device(cfg["device"]))
