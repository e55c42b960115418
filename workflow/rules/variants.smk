# The input functions and params of the ablation rules (ablation.smk), of the comparison over
# seeds (evaluate.smk) and of the robustness evaluation (robustness.smk): each maps wildcards to
# paths or plain values from the configured variants (VARIANTS, common.smk; what each variant is:
# pasm.workflow.ablation.variant_table) and the robustness block.


# The variants that build their own masked.h5 (a regex that matches nothing when there are none).
OWN_MASK_VARIANTS = (
    "|".join(re.escape(n) for n, v in VARIANTS.items() if v.images == "own_masks")
    or "(?!)"
)


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
    return search_settings("seeded")


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


def method_dir(method):
    """Where a compared method's files live below a run: round{r} or ablation/{variant}."""
    return method if method.startswith("round") else f"ablation/{method}"


def method_files(name):
    """An input function: file `name` of every compared method for every seed, method-major (the
    comparison and the robustness table read them in that order)."""

    def paths(wildcards):
        return [
            f"results/{run}/{method_dir(method)}/{name}"
            for method in comparison_methods(wildcards)
            for run in run_dirs(wildcards.ds)
        ]

    paths.__name__ = f"method_files_{name}"
    return paths


comparison_inputs = method_files("predictions.h5")


# --------------------------------------------------------------------------- robustness


def method_model(wildcards):
    """The network of a compared method of a run."""
    return f"results/{wildcards.ds}/{wildcards.method}/model.pt"


def corruption_settings(wildcards):
    """The robustness block without its attacks: changing an attack reruns no corruption job."""
    return {k: v for k, v in CFG["robustness"].items() if k != "attacks"}


def attack_search(wildcards):
    """The attack's search block, without `threads` (the job's threads: changing them reruns nothing)."""
    attacks = CFG["robustness"]["attacks"]
    if wildcards.attack not in attacks:
        raise WorkflowError(
            f"attack {wildcards.attack!r} is not configured (robustness.attacks: {list(attacks)})"
        )
    return {k: v for k, v in attacks[wildcards.attack].items() if k != "threads"}


def attack_threads(wildcards):
    """CPU threads of an attack job: its search block's."""
    return CFG["robustness"]["attacks"][wildcards.attack]["threads"]


def attack_inputs(wildcards):
    """Every attack's files, attack-major, then method-major like the other inputs."""
    return [
        path
        for attack in CFG["robustness"]["attacks"]
        for path in method_files(f"robustness/attack_{attack}.h5")(wildcards)
    ]


def training_inputs(wildcards):
    """What the compared models' training time is read from: their train_log.csv and point files."""
    logs = method_files("train_log.csv")(wildcards)
    points = [
        f"results/{run}/{method_dir(m)}/points.h5"
        for m in comparison_methods(wildcards)
        if (m.startswith("round") and m != "round0")
        or (m in VARIANTS and VARIANTS[m].points == "seeded")
        for run in run_dirs(wildcards.ds)
    ]
    return {"train_logs": logs, "points": points}
