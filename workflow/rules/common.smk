# Config validation (once, before any job) and the helpers the rules' input functions and params
# call, shared by several rule files (the ablations' and the comparison's are in their own files).
# Nothing here reads or writes a file but the config: every helper maps wildcards to paths or
# plain values.

import re

from snakemake.exceptions import WorkflowError

from pasm.data.readers.rafdb import resolve_list_path
from pasm.workflow.ablation import variant_table
from pasm.workflow.config import (
    ConfigError,
    effective_mask_size,
    reader_options,
    validate_config,
)

try:
    CFG = validate_config(
        config,
        source="workflow config (config/config.yaml, --configfile, --config)",
        check_paths=True,
    )
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

DEMO_ROOTS = {
    ds["root"].rstrip("/"): name
    for name, ds in CFG["datasets"].items()
    if ds["format"] == "demo"
}
# The configured ablation variants by name (ablation.smk; the comparison lists them too).
VARIANTS = variant_table(CFG["method"]["ablation"])


scattergather:
    search=CFG["method"]["shards"],


# {ds} is a data set, or one seed's replicate of it: "fer2013/seed1" (config key seeds).
wildcard_constraints:
    ds="[A-Za-z0-9_]+(/seed[0-9]+)?",
    r="[0-9]+",
    scatteritem="[0-9]+-of-[0-9]+",
    variant="[A-Za-z0-9_.]+",


# --------------------------------------------------------------------------- config values


def base_name(ds):
    """The data set of a {ds} wildcard: "fer2013/seed1" -> "fer2013"."""
    return ds.split("/", 1)[0]


def dataset_cfg(name):
    """The validated config block of data set `name` (or of a seed replicate of it), with a clear
    error for unknown names."""
    name = base_name(name)
    if name not in CFG["datasets"]:
        raise WorkflowError(
            f"data set {name!r} is not in the config's datasets (known: {sorted(CFG['datasets'])})"
        )
    return CFG["datasets"][name]


def ds_key(*keys):
    """A params function: the value at datasets.{ds}.<keys...> of the wildcards' data set."""

    def value(wildcards):
        node = dataset_cfg(wildcards.ds)
        for key in keys:
            node = node[key]
        return node

    value.__name__ = "datasets_" + "_".join(map(str, keys))
    return value


def seed_of(wildcards):
    """The seed of a run: N of ".../seedN", else the config's seed."""
    replicate = re.fullmatch(r"[A-Za-z0-9_]+[/]seed([0-9]+)", wildcards.ds)
    return int(replicate.group(1)) if replicate else CFG["seed"]


def faces_of(wildcards):
    """The faces of the data set, shared by all its seeds (their making uses no seed)."""
    return f"results/{base_name(wildcards.ds)}/faces.h5"


def run_dirs(name):
    """Where the runs of data set `name` live below results/: one per seed of `seeds`, or one."""
    if CFG["seeds"]:
        return [f"{name}/seed{s}" for s in CFG["seeds"]]
    return [name]


def method_key(*keys):
    """The value at method.<keys...> (the same for every data set)."""
    node = CFG["method"]
    for key in keys:
        node = node[key]
    return node


def search_settings(strategy=None):
    """method.search without `threads` (the job's threads: changing them reruns nothing), with
    `strategy` in place of the configured one when given."""
    block = {k: v for k, v in CFG["method"]["search"].items() if k != "threads"}
    return block if strategy is None else {**block, "strategy": strategy}


def reader_options_of(wildcards):
    """The reader's keyword options (class_map, or the rafdb/ckplus/affectnet/fer2013 block)."""
    return reader_options(dataset_cfg(wildcards.ds))


def mask_size_of(wildcards):
    """The mask side S of the data set (its own mask_size, else method.mask_size)."""
    return effective_mask_size(CFG, base_name(wildcards.ds))


def attempt_number(wildcards, attempt):
    """The job's attempt (1, then 2, ... on retries), as a resource: pasm.workflow.jobs reads it."""
    return attempt


def demo_setting(key):
    """A params function: the generator setting `key` (or image_size) of the demo being generated."""

    def value(wildcards):
        ds = dataset_cfg(DEMO_ROOTS[wildcards.demo_root])
        return ds["image_size"] if key == "image_size" else ds["demo"][key]

    value.__name__ = f"demo_{key}"
    return value


# --------------------------------------------------------------------------- paths of the rounds


def dataset_source(wildcards):
    """What faces.h5 is built from: the generated demo's manifest, or the user's data root (and
    RAF-DB's list files or the FER+ vote file)."""
    ds = dataset_cfg(wildcards.ds)
    if ds["format"] == "demo":
        return [f"{ds['root'].rstrip('/')}/manifest.csv"]
    lists = []
    if ds["format"] == "fer2013" and ds["fer2013"]["ferplus"]:
        lists.append(ds["fer2013"]["ferplus"])
    if ds["format"] == "rafdb":
        for key in ("occlusion_list", "pose30_list", "pose45_list"):
            if ds["rafdb"][key]:  # validated: it exists as given or below the root
                lists.append(str(resolve_list_path(ds["rafdb"][key], ds["root"])))
    return [ds["root"], *lists]


def previous_model(wildcards):
    """Round r is built from round r-1's network (the teacher)."""
    return f"results/{wildcards.ds}/round{int(wildcards.r) - 1}/model.pt"


def earlier_metrics(wildcards):
    """Metrics of rounds 0..r-1: round r's report draws them, so a round's target yields every round's."""
    return [
        f"results/{wildcards.ds}/round{k}/metrics.json" for k in range(int(wildcards.r))
    ]


def round_point_density(wildcards):
    """Round r >= 1's point-density picture, shown in its report (round 0 has no mined points)."""
    if int(wildcards.r) == 0:
        return []
    return [f"results/{wildcards.ds}/round{wildcards.r}/point_density.png"]


def cross_metrics_of(rounds, wildcards):
    """Cross-data-set results of the given rounds, for the targets of the data set's cross_eval."""
    return [
        f"results/{wildcards.ds}/round{r}/cross/{target}/metrics.json"
        for r in rounds
        for target in dataset_cfg(wildcards.ds)["cross_eval"]
    ]


def cross_metrics(wildcards):
    """Cross-data-set results of round r."""
    return cross_metrics_of([wildcards.r], wildcards)


def earlier_cross_metrics(wildcards):
    """Cross-data-set results of rounds 0..r-1, drawn in round r's report."""
    return cross_metrics_of(range(int(wildcards.r)), wildcards)


def round_model(wildcards):
    """The network of the round being evaluated."""
    return f"results/{wildcards.ds}/round{wildcards.r}/model.pt"


def all_targets():
    """Default target: metrics of rounds 0..method.rounds for every configured data set, or with
    rounds: auto, each data set's final.json (rounds added while validation accuracy improves).
    """
    runs = [run for name in CFG["datasets"] for run in run_dirs(name)]
    if CFG["method"]["rounds"] == "auto":
        return [f"results/{run}/final.json" for run in runs]
    return [
        f"results/{run}/round{r}/metrics.json"
        for run in runs
        for r in range(CFG["method"]["rounds"] + 1)
    ]


def metrics_so_far(wildcards):
    """Metrics of rounds 0..r, in order (the round decision compares the last two)."""
    return [
        f"results/{wildcards.ds}/round{r}/metrics.json"
        for r in range(int(wildcards.r) + 1)
    ]


def decision_split(wildcards):
    """The split rounds: auto decides on: the validation split, else the first evaluation split."""
    ds = dataset_cfg(wildcards.ds)
    return ds["val_split"] or ds["eval_splits"][0]


def last_round(wildcards):
    """The first round whose decision says stop (decisions are built one at a time: a checkpoint)."""
    import json

    r = 0
    while True:
        path = checkpoints.round_decision.get(ds=wildcards.ds, r=str(r)).output[0]
        with open(path) as fh:
            if not json.load(fh)["continue"]:
                return r
        r += 1


def decided_rounds(wildcards):
    """Round decisions 0, 1, ... up to the first that says stop."""
    return [
        f"results/{wildcards.ds}/rounds/decision{i}.json"
        for i in range(last_round(wildcards) + 1)
    ]


def decided_models(wildcards):
    """The models of the rounds built, 0..the last decided one (final.json names the best)."""
    return [
        f"results/{wildcards.ds}/round{i}/model.pt"
        for i in range(last_round(wildcards) + 1)
    ]
