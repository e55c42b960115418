"""The robustness table of every compared method over seeds: accuracy on the clean evaluation sets
(with RAF-DB's occlusion and pose subsets where the data set has them), on each corrupted copy of
the main test split, their mean (the corruption accuracy), and under the one-pixel attack (attack
success rate, mean drop of the true-class probability, accuracy under attack), each with the
comparison's paired statistics against the references (pasm.evaluate.comparison.comparison_rows)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pasm.data.atomic import atomic_path
from pasm.data.h5store import read_table
from pasm.evaluate.comparison import _diff, _mean_sd, _pct, _sd, comparison_rows, load_correct
from pasm.evaluate.plots import robustness_plot

log = logging.getLogger(__name__)

MEAN_SET = "corruption accuracy"
"""The set whose per-face score is the share of the face's corrupted copies classified right."""


def attack_rates(table: dict[str, np.ndarray]) -> dict[str, Any]:
    """One attack's outcome on one model (a points table: clean_correct, flipped, prob_before,
    prob_after): per face right under attack (right before, not flipped), the success rate (flipped
    among the faces right before; 0 when none is) and the mean true-class probability drop on them."""
    right = np.asarray(table["clean_correct"]).astype(bool)
    flipped = np.asarray(table["flipped"]).astype(bool) & right
    drop = np.asarray(table["prob_before"])[right] - np.asarray(table["prob_after"])[right]
    return {
        "correct": (right & ~flipped).astype(np.int8),
        "right_before": int(right.sum()),
        "success": float(flipped.sum() / right.sum()) if right.any() else 0.0,
        "prob_drop": float(drop.mean()) if right.any() else 0.0,
    }


def attack_set(
    attack_paths: Sequence[str | Path], methods: Sequence[str], seeds: Sequence[int]
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """One attack's files (method-major, like load_correct's) as a set whose faces count as right when
    the model was right on the clean face and the attack did not flip it; and per method the
    (seeds,) attack success rates (flips among faces right before) and mean true-class probability drops."""
    if len(attack_paths) != len(methods) * len(seeds):
        raise ValueError(f"{len(attack_paths)} attack files for {len(methods)} methods x {len(seeds)} seeds")
    first, correct, extra = None, {}, {}
    for i, method in enumerate(methods):
        flags, success, drop = [], [], []
        for j in range(len(seeds)):
            path = attack_paths[i * len(seeds) + j]
            table, _ = read_table(path)
            if first is None:
                first = {"rows": table["index"], "labels": table["labels"], "path": path}
            elif not np.array_equal(table["index"], first["rows"]):
                raise ValueError(f"{path}: the attacked faces differ from those in {first['path']}")
            rates = attack_rates(table)
            flags.append(rates["correct"])
            success.append(rates["success"])
            drop.append(rates["prob_drop"])
        correct[method] = np.stack(flags)
        extra[method] = {"success": np.array(success), "prob_drop": np.array(drop)}
    assert first is not None
    return {"rows": first["rows"], "labels": first["labels"], "correct": correct}, extra


def corruption_mean_set(sets: dict[str, dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """A set whose per-(seed, face) score is the share of the corrupted sets ``keys`` that are right."""
    first = sets[keys[0]]
    for k in keys:
        if not np.array_equal(sets[k]["rows"], first["rows"]):
            raise ValueError(f"corrupted set {k} holds other faces than {keys[0]}")
    methods = first["correct"]
    return {
        "rows": first["rows"],
        "labels": first["labels"],
        "correct": {m: np.mean([sets[k]["correct"][m] for k in keys], axis=0) for m in methods},
    }


def family(key: str) -> str:
    """The corruption family of a corrupted set's key below its split: 'occlusion/eyes/grey' ->
    'eyes occluded', 'patch/25' -> 'patch', 'gaussian_noise/2' -> 'gaussian_noise'."""
    parts = key.split("/")
    return f"{parts[1]} occluded" if parts[0] == "occlusion" else parts[0]


def family_rows(
    clean: dict[str, Any], corrupted: dict[str, dict[str, Any]], keys: Sequence[str], methods: Sequence[str]
) -> list[dict[str, Any]]:
    """Per corruption family and method: the accuracy drop from the clean split (points of accuracy,
    averaged over the family's copies) as mean and standard deviation over seeds."""
    groups: dict[str, list[str]] = {}
    for k in keys:
        groups.setdefault(family(k.split("/", 1)[1]), []).append(k)
    rows = []
    for fam, members in groups.items():
        for m in methods:
            clean_acc = clean["correct"][m].mean(axis=1)  # (seeds,)
            drop = clean_acc - np.mean([corrupted[k]["correct"][m].mean(axis=1) for k in members], axis=0)
            rows.append(
                {
                    "set": f"drop {fam}",
                    "kind": "family",
                    "method": m,
                    "copies": len(members),
                    "drop_mean": float(drop.mean()),
                    "drop_sd": _sd(drop),
                }
            )
    return rows


def robustness_rows(
    prediction_paths: Sequence[str | Path],
    corruption_paths: Sequence[str | Path],
    attack_paths: dict[str, Sequence[str | Path]],
    methods: Sequence[str],
    seeds: Sequence[int],
    references: Sequence[str],
    main_split: str,
    n_boot: int = 2000,
) -> list[dict[str, Any]]:
    """Rows of comparison_rows for the clean sets, each corrupted copy of ``main_split``, their mean
    and each attack, with a ``kind`` (clean, corruption, mean, attack) and the attacks' rates."""
    clean = load_correct(prediction_paths, methods, seeds)
    corrupted = load_correct(corruption_paths, methods, seeds)
    main_prefix = f"{main_split}/"
    keys = [k for k in corrupted if k.startswith(main_prefix)]
    sets: dict[str, dict[str, Any]] = {}
    kinds: dict[str, str] = {}
    for name, s in clean.items():
        sets[f"clean {name}"], kinds[f"clean {name}"] = s, "clean"
    for name, s in corrupted.items():
        sets[name], kinds[name] = s, "corruption"
    if keys:
        sets[MEAN_SET], kinds[MEAN_SET] = corruption_mean_set(corrupted, keys), "mean"
    rates = {}
    for attack, paths in attack_paths.items():
        name = f"attack {attack}"
        sets[name], rates[name] = attack_set(paths, methods, seeds)
        kinds[name] = "attack"
    rows = comparison_rows(sets, methods, references, n_boot=n_boot)
    for row in rows:
        row["kind"] = kinds[row["set"]]
        if row["set"] in rates:
            r = rates[row["set"]][row["method"]]
            row["attack_success_mean"], row["attack_success_sd"] = (
                float(r["success"].mean()),
                _sd(r["success"]),
            )
            row["prob_drop_mean"] = float(r["prob_drop"].mean())
    main = clean.get(f"splits/{main_split}")
    if keys and main is not None:
        if not np.array_equal(main["rows"], corrupted[keys[0]]["rows"]):
            raise ValueError(
                f"the corrupted copies of {main_split} hold other faces than its clean evaluation"
            )
        rows += family_rows(main, corrupted, keys, methods)
    return rows


def _by(rows: list[dict[str, Any]], kind: str) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        if r["kind"] == kind:
            out.setdefault(r["set"], {})[r["method"]] = r
    return out


def _table(head: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + " --- |" * len(head),
        *("| " + " | ".join(b) + " |" for b in body),
        "",
    ]


def markdown(
    rows: list[dict[str, Any]],
    methods: Sequence[str],
    references: Sequence[str],
    seeds: Sequence[int],
    dataset: str,
    n_boot: int,
    cost: str,
) -> str:
    """The robustness table as markdown: the summary, the attacks, then accuracy and paired differences
    per corrupted set."""
    n_seeds = len(seeds)

    def cell(r: dict[str, Any], ref: str) -> str:
        return "" if r["method"] == ref else _diff(r, ref)

    lines = [
        f"# {dataset}: robustness of the methods compared over seeds {list(seeds)}",
        "",
        "Accuracy (%): mean +- standard deviation over seeds. Difference to a reference (points): "
        f"mean over seeds with a 95% paired bootstrap interval ({n_boot} resamples of the faces, shared "
        "by all seeds, and of the seeds), as in comparison.md; McNemar p-values are in the CSV. "
        f"'better'/'worse' mark intervals that exclude 0. The {MEAN_SET} is each face's share of "
        "corrupted copies classified right, averaged; it has no McNemar test. Under attack, a face "
        "counts as right when the model was right on it and the one-pixel search did not flip it; the "
        "success rate is the share of flipped faces among those right before, the probability drop the "
        "mean fall of the true-class probability on them.",
        "",
        cost,
        "",
    ]
    head = ["set", "n", *[f"{m}" for m in methods]]
    summary = [r for r in rows if r["kind"] in ("clean", "mean")]
    if summary:
        lines += [f"## Clean and corrupted ({n_seeds} seed{'s' if n_seeds > 1 else ''})", ""]
        grouped = {k: v for kind in ("clean", "mean") for k, v in _by(rows, kind).items()}
        body = [
            [
                s,
                str(next(iter(ms.values()))["n"]),
                *[_mean_sd(ms[m]["accuracy_mean"], ms[m]["accuracy_sd"]) for m in methods],
            ]
            for s, ms in grouped.items()
        ]
        lines += _table(head, body)
        for ref in references:
            body = [[s, *[cell(ms[m], ref) for m in methods if m != ref]] for s, ms in grouped.items()]
            lines += [f"Difference to {ref}:", "", *_table(["set", *[m for m in methods if m != ref]], body)]
    attacks = _by(rows, "attack")
    for name, ms in attacks.items():
        n = next(iter(ms.values()))["n"]
        lines += [f"## {name} ({n} faces of the main test split)", ""]
        head_a = [
            "method",
            "success rate",
            "probability drop",
            "accuracy under attack",
            *[f"vs {ref}" for ref in references],
        ]
        body = [
            [
                m,
                _mean_sd(ms[m]["attack_success_mean"], ms[m]["attack_success_sd"]),
                f"{ms[m]['prob_drop_mean']:.3f}",
                _mean_sd(ms[m]["accuracy_mean"], ms[m]["accuracy_sd"]),
                *[cell(ms[m], ref) for ref in references],
            ]
            for m in methods
        ]
        lines += _table(head_a, body)
    families = _by(rows, "family")
    if families:
        lines += [
            "## Accuracy drop per corruption family (points, clean minus corrupted, mean +- sd over seeds)",
            "",
        ]
        body = [
            [s.removeprefix("drop "), *[_mean_sd(ms[m]["drop_mean"], ms[m]["drop_sd"]) for m in methods]]
            for s, ms in families.items()
        ]
        lines += _table(["family", *methods], body)
    corrupted = _by(rows, "corruption")
    if corrupted:
        lines += ["## Accuracy per corrupted copy", ""]
        body = [
            [
                s,
                str(next(iter(ms.values()))["n"]),
                *[_mean_sd(ms[m]["accuracy_mean"], ms[m]["accuracy_sd"]) for m in methods],
            ]
            for s, ms in corrupted.items()
        ]
        lines += _table(head, body)
        for ref in references:
            lines += [f"## Difference to {ref} per corrupted copy", ""]
            body = [[s, *[cell(ms[m], ref) for m in methods if m != ref]] for s, ms in corrupted.items()]
            lines += _table(["set", *[m for m in methods if m != ref]], body)
    return "\n".join(lines)


def training_seconds(train_logs: Sequence[str | Path], points: Sequence[str | Path]) -> float:
    """Seconds of the compared models' training: their epochs (train_log.csv) and their point searches."""
    total = 0.0
    for path in train_logs:
        with open(path, newline="") as fh:
            total += sum(float(row["seconds"]) for row in csv.DictReader(fh))
    for path in points:
        total += float(read_table(path)[1].get("search_seconds", 0.0))
    return total


def write_robustness(
    *,
    prediction_paths: Sequence[str | Path],
    corruption_paths: Sequence[str | Path],
    attack_paths: dict[str, Sequence[str | Path]],
    methods: Sequence[str],
    seeds: Sequence[int],
    references: Sequence[str],
    main_split: str,
    dataset: str,
    out_md: str | Path,
    out_csv: str | Path,
    out_png: str | Path,
    eval_seconds: float,
    train_seconds: float,
    n_boot: int = 2000,
) -> list[dict[str, Any]]:
    """Build the robustness table and write it as markdown, CSV (one row per set and method) and a plot
    of each method's accuracy drop per corruption family and its attack success rates."""
    references = [r for r in references if r in methods]
    rows = robustness_rows(
        prediction_paths, corruption_paths, attack_paths, methods, seeds, references, main_split, n_boot
    )
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(rows)
    share = eval_seconds / train_seconds if train_seconds else float("nan")
    cost = (
        f"Cost: this evaluation took {eval_seconds / 60:.1f} min of job time, the compared models' training "
        f"(epochs and point searches) {train_seconds / 60:.1f} min: {_pct(share)}% of it."
    )
    text = markdown(rows, methods, references, seeds, dataset, n_boot, cost)
    with atomic_path(out_md) as tmp:
        Path(tmp).write_text(text)
    robustness_plot(
        rows, methods, f"clean splits/{main_split}", out_png, title=f"{dataset}: {len(seeds)} seed(s)"
    )
    log.info("%s", text)
    return rows
