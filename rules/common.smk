# Config validation (once, before any job) and the path/parameter helpers used by the rules.

import os
import re

from snakemake.exceptions import WorkflowError

from snakemake.logging import logger

from pasm.config import ConfigError, validate_config
from pasm.staleness import mark_stale, stale_consumers

try:
    CFG = validate_config(config, source="workflow config (config.yaml, --configfile, --config)")
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

if CFG["rebuild_deleted"]:
    for _path in mark_stale(stale_consumers("results", CFG["datasets"])):
        logger.info(f"{_path} was built from an artifact that has been deleted: it will be rebuilt")

def _search_uses_gpu():
    """Search shards declare a gpu resource when they will run on CUDA."""
    if CFG["device"] == "cpu":
        return False
    from pasm.gpu_slots import physical_gpu_count

    return CFG["device"] == "cuda" or physical_gpu_count() > 0


SEARCH_GPUS = 1 if _search_uses_gpu() else 0

DEMO_ROOTS = {ds["root"].rstrip("/"): name for name, ds in CFG["datasets"].items() if ds["format"] == "demo"}

scattergather:
    search=CFG["method"]["shards"],


wildcard_constraints:
    ds="[A-Za-z0-9_]+",
    r="[0-9]+",
    scatteritem="[0-9]+-of-[0-9]+",


def dataset_cfg(name):
    """The validated config block of data set `name`, with a clear error for unknown names."""
    if name not in CFG["datasets"]:
        raise WorkflowError(f"data set {name!r} is not in the config's datasets (known: {sorted(CFG['datasets'])})")
    return CFG["datasets"][name]


def job_config(name, with_method):
    """The part of the config a job depends on: its data set's block (and the method's if used).

    Passed as a rule param, so a change to another data set's block does not rerun this job.
    """
    return {
        "seed": CFG["seed"],
        "device": CFG["device"],
        "threads": CFG["threads"],
        "gpus": CFG["gpus"],
        "gpu_lock_dir": CFG["gpu_lock_dir"],
        "datasets": {name: dataset_cfg(name)},
        # method.rounds only chooses the default target; it must not rerun jobs
        "method": {k: v for k, v in CFG["method"].items() if k != "rounds"} if with_method else {},
    }


def data_params(wildcards):
    """Config slice for data preparation: reader settings only, no training keys."""
    ds = dataset_cfg(wildcards.ds)
    keep = ("format", "root", "image_size", "class_map", "train_split", "val_split", "eval_splits", "rafdb",
            "ckplus", "align")
    return {"device": CFG["device"], "datasets": {wildcards.ds: {k: ds[k] for k in keep}}}


def train_params(wildcards):
    """Config slice for pretraining and evaluation (no PASM method keys)."""
    return job_config(wildcards.ds, with_method=False)


def round_params(wildcards):
    """Config slice for the PASM stages of a round (search, masking, fine-tuning)."""
    return job_config(wildcards.ds, with_method=True)


def dataset_source(wildcards):
    """What faces.h5 is built from: the generated demo's manifest, or the user's data root."""
    ds = dataset_cfg(wildcards.ds)
    if ds["format"] == "demo":
        return [f"{ds['root'].rstrip('/')}/manifest.csv"]
    lists = []
    if ds["format"] == "rafdb":
        for key in ("occlusion_list", "pose30_list", "pose45_list"):
            given = ds["rafdb"][key]
            if given:  # the reader also accepts list paths relative to the data set root
                lists.append(given if os.path.exists(given) else os.path.join(ds["root"], given))
    return [ds["root"], *lists]


def demo_params(wildcards):
    """Generator settings of the demo data set whose root is being generated."""
    ds = dataset_cfg(DEMO_ROOTS[wildcards.demo_root])
    return {"demo": ds["demo"], "image_size": ds["image_size"]}


def previous_model(wildcards):
    """Round r is built from round r-1's network (the teacher)."""
    return f"results/{wildcards.ds}/round{int(wildcards.r) - 1}/model.pt"


def previous_metrics(wildcards):
    """Evaluating round r also evaluates rounds 0..r-1, so a round's target yields every round's metrics."""
    r = int(wildcards.r)
    return [f"results/{wildcards.ds}/round{r - 1}/metrics.json"] if r > 0 else []


def round_point_density(wildcards):
    """Round r >= 1's point-density picture, drawn with its evaluation (round 0 has no mined points)."""
    return [f"results/{wildcards.ds}/round{wildcards.r}/point_density.png"] if int(wildcards.r) > 0 else []


def cross_metrics(wildcards):
    """Cross-data-set results of this round, for the targets listed in the data set's cross_eval."""
    return [
        f"results/{wildcards.ds}/round{wildcards.r}/cross/{target}/metrics.json"
        for target in dataset_cfg(wildcards.ds)["cross_eval"]
    ]


def round_model(wildcards):
    """The network of the round being evaluated."""
    return f"results/{wildcards.ds}/round{wildcards.r}/model.pt"


def all_targets():
    """Default target: metrics of rounds 0..method.rounds for every configured data set."""
    return [
        f"results/{name}/round{r}/metrics.json"
        for name in CFG["datasets"]
        for r in range(CFG["method"]["rounds"] + 1)
    ]
