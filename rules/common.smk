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


# Method keys that only choose targets (rounds) or configure the ablations: main-round jobs
# must not rerun when they change.
TARGET_ONLY_KEYS = ("rounds", "max_rounds", "auto_margin", "ablation")

# Keys only later stages read, left out of the params of the stages before them, so that a change
# reruns the first stage that reads the key and what is built from it, nothing upstream (README:
# "Which config keys rerun which stages").
FINETUNE_DS_KEYS = ("finetune",)  # datasets.{ds}.finetune
FINETUNE_METHOD_KEYS = ("alpha", "beta")  # Eq. 4's weights
MASK_KEYS = ("mask_size",)  # datasets.{ds}.mask_size and method.mask_size
INPUT_ONLY_DS_KEYS = ("cross_eval",)  # chooses extra inputs of evaluate, read by no job


def job_config(name, with_method, with_ablation=False, drop_ds=(), drop_method=()):
    """The part of the config a job depends on: its data set's block (and the method's if used),
    less the keys in drop_ds and drop_method.

    Passed as a rule param, so a change to another data set's block does not rerun this job.
    """
    drop = (TARGET_ONLY_KEYS if not with_ablation else ("rounds", "max_rounds", "auto_margin")) + tuple(drop_method)
    return {
        "seed": CFG["seed"],
        "device": CFG["device"],
        "threads": CFG["threads"],
        "gpus": CFG["gpus"],
        "gpu_lock_dir": CFG["gpu_lock_dir"],
        "datasets": {name: {k: v for k, v in dataset_cfg(name).items() if k not in drop_ds}},
        "method": {k: v for k, v in CFG["method"].items() if k not in drop} if with_method else {},
    }


def data_params(wildcards):
    """Config slice for data preparation: reader settings only, no training keys."""
    ds = dataset_cfg(wildcards.ds)
    keep = ("format", "root", "image_size", "class_map", "train_split", "val_split", "eval_splits", "rafdb",
            "ckplus", "align")
    return {"device": CFG["device"], "datasets": {wildcards.ds: {k: ds[k] for k in keep}}}


def train_params(wildcards):
    """Config slice for pretraining and evaluation: no PASM method keys, no round-only data set keys."""
    return job_config(wildcards.ds, with_method=False, drop_ds=FINETUNE_DS_KEYS + MASK_KEYS + INPUT_ONLY_DS_KEYS)


def search_params(wildcards):
    """Config slice for the point search and gathering (no mask size, no fine-tuning keys)."""
    return job_config(wildcards.ds, with_method=True, drop_ds=FINETUNE_DS_KEYS + MASK_KEYS + INPUT_ONLY_DS_KEYS,
                      drop_method=FINETUNE_METHOD_KEYS + MASK_KEYS)


def round_params(wildcards):
    """Config slice for the masked samples of a round (no fine-tuning keys)."""
    return job_config(wildcards.ds, with_method=True, drop_ds=FINETUNE_DS_KEYS + INPUT_ONLY_DS_KEYS,
                      drop_method=FINETUNE_METHOD_KEYS)


def finetune_params(wildcards):
    """Config slice for a round's fine-tuning: every data set and method key a round uses."""
    return job_config(wildcards.ds, with_method=True, drop_ds=INPUT_ONLY_DS_KEYS)


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
    """Default target: metrics of rounds 0..method.rounds for every configured data set, or with
    rounds: auto, each data set's final.json (rounds added while validation accuracy improves)."""
    if CFG["method"]["rounds"] == "auto":
        return [f"results/{name}/final.json" for name in CFG["datasets"]]
    return [
        f"results/{name}/round{r}/metrics.json"
        for name in CFG["datasets"]
        for r in range(CFG["method"]["rounds"] + 1)
    ]


def metrics_so_far(wildcards):
    """Metrics of rounds 0..r, in order (the round decision compares the last two)."""
    return [f"results/{wildcards.ds}/round{r}/metrics.json" for r in range(int(wildcards.r) + 1)]


def val_split_of(wildcards):
    """The validation split of the data set (rounds: auto decides on it; checked in the config)."""
    return dataset_cfg(wildcards.ds)["val_split"] or dataset_cfg(wildcards.ds)["eval_splits"][0]


def decided_rounds(wildcards):
    """Round decisions 0, 1, ... up to the first that says stop (built one at a time: a checkpoint)."""
    import json

    r = 0
    while True:
        path = checkpoints.round_decision.get(ds=wildcards.ds, r=str(r)).output[0]
        with open(path) as fh:
            if not json.load(fh)["continue"]:
                break
        r += 1
    return [f"results/{wildcards.ds}/rounds/decision{i}.json" for i in range(r + 1)]


wildcard_constraints:
    variant="[A-Za-z0-9_.]+",


def ablation_variants(wildcards):
    """The ablation variants the config asks for (see pasm.ablation)."""
    from pasm.ablation import variant_names

    return variant_names(CFG["method"]["ablation"])


def ablation_params(wildcards):
    """Config slice of the ablation jobs: the method's keys including its ablation block."""
    return job_config(wildcards.ds, with_method=True, with_ablation=True)


def seeded_params(wildcards):
    """Round-1 job config with the point search switched to the seeded strategy."""
    cfg = ablation_params(wildcards)
    cfg["method"] = {**cfg["method"], "search": {**cfg["method"]["search"], "strategy": "seeded"}}
    return cfg


def ablation_points(wildcards):
    """The points a masked variant is built from: its own (pasm_seeded) or PASM round 1's."""
    if wildcards.variant == "pasm_seeded":
        return f"results/{wildcards.ds}/ablation/pasm_seeded/points.h5"
    return f"results/{wildcards.ds}/round1/points.h5"


def ablation_mask_size(wildcards):
    """The swept mask side of a mask_size_S variant; None: the configured size."""
    if wildcards.variant.startswith("mask_size_"):
        return int(wildcards.variant[len("mask_size_"):])
    return None


def ablation_inputs(wildcards):
    """Extra inputs of a variant's training job: its masked images and, for cross_network, the other backbone."""
    v, ds = wildcards.variant, wildcards.ds
    if v not in ablation_variants(wildcards):
        raise WorkflowError(f"ablation {v!r} is not configured (method.ablation: {ablation_variants(wildcards)})")
    if v in ("random_erasing", "adv_erasing"):
        return {}
    if v in ("pasm_seeded",) or v.startswith("mask_size_"):
        return {"masked": f"results/{ds}/ablation/{v}/masked.h5"}
    inputs = {"masked": f"results/{ds}/round1/masked.h5"}
    if v == "cross_network":
        inputs["init"] = f"results/{ds}/ablation/cross_network/round0/model.pt"
    return inputs


def ablation_table_inputs(wildcards):
    """Metrics and models of round 0, round 1 and every variant, plus the point files behind their masks."""
    ds = wildcards.ds
    inputs = {
        "metrics": [f"results/{ds}/round{r}/metrics.json" for r in (0, 1)]
        + [f"results/{ds}/ablation/{v}/metrics.json" for v in ablation_variants(wildcards)],
        "models": [f"results/{ds}/round{r}/model.pt" for r in (0, 1)]
        + [f"results/{ds}/ablation/{v}/model.pt" for v in ablation_variants(wildcards)],
        "points": [f"results/{ds}/round1/points.h5"],
    }
    if "pasm_seeded" in ablation_variants(wildcards):
        inputs["points"].append(f"results/{ds}/ablation/pasm_seeded/points.h5")
    return inputs
