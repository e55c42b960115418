"""Snakemake script: round 0 of the cross-network ablation's second backbone."""
from pasm.jobs import snakemake_job
from pasm.stages import pretrain

with snakemake_job(snakemake):  # noqa: F821 (injected by Snakemake)
    smk = snakemake  # noqa: F821
    cfg = smk.params.cfg
    pretrain(smk.input.faces, smk.wildcards.ds, cfg, smk.output.model, smk.output.train_log,
             model_cfg=cfg["method"]["ablation"]["cross_network"])
