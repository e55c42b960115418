# Config validation (once, before any job) and the helpers the rules' input functions and params
# call. Nothing here reads or writes a file but the config: every helper maps wildcards to paths or
# plain values.

import os
import re

from snakemake.exceptions import WorkflowError

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
VARIANTS = variant_table(CFG["method"]["ablation"])
# The variants that build their own masked.h5 (a regex that matches nothing when there are none).
OWN_MASK_VARIANTS = (
    "|".join(re.escape(n) for n, v in VARIANTS.items() if v.images == "own_masks")
    or "(?!)"
)


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


def reader_options_of(wildcards):
    """The reader's keyword options (class_map, or the rafdb/ckplus/affectnet/fer2013 block)."""
    return reader_options(dataset_cfg(wildcards.ds))


def mask_size_of(wildcards):
    """The mask side S of the data set (its own mask_size, else method.mask_size)."""
    return effective_mask_size(CFG, base_name(wildcards.ds))


def attempt_number(wildcards, attempt):
    """The job's attempt (1, then 2, ... on retries), as a resource: pasm.workflow.jobs reads it."""
    return attempt


def demo_settings(wildcards):
    """Generator settings and image size of the demo data set whose root is being generated."""
    ds = dataset_cfg(DEMO_ROOTS[wildcards.demo_root])
    return {**ds["demo"], "image_size": ds["image_size"]}


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
            given = ds["rafdb"][key]
            if (
                given
            ):  # the reader also accepts list paths relative to the data set root
                lists.append(
                    given if os.path.exists(given) else os.path.join(ds["root"], given)
                )
    return [ds["root"], *lists]


def previous_model(wildcards):
    """Round r is built from round r-1's network (the teacher)."""
    return f"results/{wildcards.ds}/round{int(wildcards.r) - 1}/model.pt"


def previous_metrics(wildcards):
    """Evaluating round r also evaluates rounds 0..r-1, so a round's target yields every round's metrics."""
    r = int(wildcards.r)
    return [f"results/{wildcards.ds}/round{r - 1}/metrics.json"] if r > 0 else []


def round_point_density(wildcards):
    """Round r >= 1's point-density picture, drawn with its evaluation (round 0 has no mined points)."""
    if int(wildcards.r) == 0:
        return []
    return [f"results/{wildcards.ds}/round{wildcards.r}/point_density.png"]


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


# --------------------------------------------------------------------------- ablations


def variant_of(wildcards):
    """The configured ablation variant of the wildcards (pasm.workflow.ablation.variant_table)."""
    if wildcards.variant not in VARIANTS:
        raise WorkflowError(
            f"ablation {wildcards.variant!r} is not configured (method.ablation: {list(VARIANTS)})"
        )
    return VARIANTS[wildcards.variant]


def variant_params(wildcards):
    """The variant's table row as plain values."""
    return variant_of(wildcards).as_params()


def variant_alpha(wildcards):
    """Eq. 4's alpha of the variant (its own, else method.alpha)."""
    v = variant_of(wildcards)
    return CFG["method"]["alpha"] if v.alpha is None else v.alpha


def variant_beta(wildcards):
    """Eq. 4's beta of the variant (its own, else method.beta; 0: no teacher)."""
    v = variant_of(wildcards)
    return CFG["method"]["beta"] if v.beta is None else v.beta


def variant_erasing(wildcards):
    """The method.ablation block of the variant's erasing (None for the masked variants)."""
    v = variant_of(wildcards)
    return CFG["method"]["ablation"][v.erasing] if v.erasing else None


def variant_mask_size(wildcards):
    """The mask side of a variant's own masks (its own S, else the configured one)."""
    return variant_of(wildcards).mask_size or mask_size_of(wildcards)


def variant_points(wildcards):
    """The points a variant with its own masks is built from: its own search or PASM round 1's."""
    if variant_of(wildcards).points == "seeded":
        return f"results/{wildcards.ds}/ablation/{wildcards.variant}/points.h5"
    return f"results/{wildcards.ds}/round1/points.h5"


def seeded_search_settings(wildcards):
    """method.search with the strategy switched to the seeded search."""
    return {**CFG["method"]["search"], "strategy": "seeded"}


def variant_inputs(wildcards):
    """Extra inputs of a variant's training job: its masked images and the other backbone's round 0."""
    v, ds = variant_of(wildcards), wildcards.ds
    inputs = {}
    if v.images == "own_masks":
        inputs["masked"] = f"results/{ds}/ablation/{v.name}/masked.h5"
    elif v.images == "round1_masks":
        inputs["masked"] = f"results/{ds}/round1/masked.h5"
    if v.learner == "cross_network":
        inputs["init"] = f"results/{ds}/ablation/cross_network/round0/model.pt"
    return inputs


def variants_as_params(wildcards):
    """Every configured variant's row, in table order."""
    return [v.as_params() for v in VARIANTS.values()]


def ablation_table_inputs(wildcards):
    """Metrics and models of round 0, round 1 and every variant, plus the point files behind their masks."""
    ds = wildcards.ds
    inputs = {
        "metrics": [f"results/{ds}/round{r}/metrics.json" for r in (0, 1)]
        + [f"results/{ds}/ablation/{v}/metrics.json" for v in VARIANTS],
        "models": [f"results/{ds}/round{r}/model.pt" for r in (0, 1)]
        + [f"results/{ds}/ablation/{v}/model.pt" for v in VARIANTS],
        "points": [f"results/{ds}/round1/points.h5"],
    }
    inputs["points"] += [
        f"results/{ds}/ablation/{v.name}/points.h5"
        for v in VARIANTS.values()
        if v.points == "seeded"
    ]
    return inputs


# --------------------------------------------------------------------------- comparison over seeds


def comparison_methods(wildcards):
    """The methods of results/{ds}/comparison.*: rounds 0..method.rounds, then every ablation variant."""
    rounds = CFG["method"]["rounds"]
    if rounds == "auto":
        raise WorkflowError(
            "results/{ds}/comparison.* compares a fixed number of rounds: set method.rounds to a number"
        )
    return [f"round{r}" for r in range(rounds + 1)] + list(VARIANTS)


def comparison_seeds(wildcards):
    """The seeds compared: the config's seeds, or its one seed."""
    return CFG["seeds"] or [CFG["seed"]]


def comparison_inputs(wildcards):
    """predictions.h5 of every method for every seed, method-major (read in that order)."""
    paths = []
    for method in comparison_methods(wildcards):
        sub = method if method.startswith("round") else f"ablation/{method}"
        paths += [
            f"results/{run}/{sub}/predictions.h5" for run in run_dirs(wildcards.ds)
        ]
    return paths
