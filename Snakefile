# PASM: Point Adversarial Self Mining for facial expression recognition.
# Usage: snakemake --cores 8 results/demo/round3/metrics.json   (see README.md)

import sys

sys.path.insert(0, workflow.basedir)  # the pasm package, also when it is not pip-installed

configfile: "config.yaml"

report: "report/workflow.rst"  # snakemake --report report.html: pictures, tables, config, runtimes


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/search.smk"
include: "rules/evaluate.smk"
include: "rules/ablation.smk"


# Bookkeeping jobs that read a few small files: on a cluster they run on the submitting node
# instead of waiting in the queue.
localrules:
    round_decision,
    final,
    ablation_table,


rule all:
    input:
        all_targets(),
    default_target: True
