"""The comparison of every method of a run (rounds 0..R, ablation variants) over seeds: accuracy
and mean class accuracy as mean and standard deviation over seeds, and the paired difference of
each method against the references (round 0, random erasing) with a bootstrap interval and an
exact McNemar p-value (pasm.evaluate.paired), per evaluation split and subset."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pasm.data.atomic import atomic_path
from pasm.data.h5store import read_groups
from pasm.evaluate.paired import compare
from pasm.evaluate.plots import comparison_plot

log = logging.getLogger(__name__)


def mean_class_accuracy(labels: np.ndarray, correct: np.ndarray) -> float:
    """Mean recall over the classes that have faces, from each face's score (1 right, 0 wrong, or
    a share of its corrupted copies that are right)."""
    return float(np.mean([correct[labels == c].mean() for c in np.unique(labels)]))


def load_correct(
    prediction_paths: Sequence[str | Path], methods: Sequence[str], seeds: Sequence[int]
) -> dict[str, dict[str, Any]]:
    """Per evaluated set: labels and, per method, the (seeds, faces) 0/1 correct flags.

    ``prediction_paths`` holds method 0's files for every seed, then method 1's, ...; every file
    must hold the same sets with the same faces (rows), or the comparison would not be paired. A
    set's table holds ``logits`` or the ``predicted`` classes.
    """
    if len(prediction_paths) != len(methods) * len(seeds):
        raise ValueError(
            f"{len(prediction_paths)} prediction files for {len(methods)} methods x {len(seeds)} seeds"
        )
    files = [read_groups(p) for p in prediction_paths]
    loaded = [groups for groups, _ in files]
    first_path, first = prediction_paths[0], loaded[0]
    order = files[0][1].get("sets", sorted(first))  # the evaluation's order: val, test, subsets
    sets: dict[str, dict[str, Any]] = {}
    for name in order:
        table = first[name]
        sets[name] = {"rows": table["rows"], "labels": table["labels"], "correct": {}}
    for i, method in enumerate(methods):
        for j in range(len(seeds)):
            path, groups = prediction_paths[i * len(seeds) + j], loaded[i * len(seeds) + j]
            if set(groups) != set(sets):
                raise ValueError(f"{path} holds sets {sorted(groups)}, {first_path} {sorted(sets)}")
            for name, s in sets.items():
                if not np.array_equal(groups[name]["rows"], s["rows"]):
                    raise ValueError(f"{path}: the faces of {name} differ from those in {first_path}")
                table = groups[name]
                pred = table["predicted"] if "predicted" in table else table["logits"].argmax(1)
                s["correct"].setdefault(method, []).append((pred == s["labels"]).astype(np.int8))
    for s in sets.values():
        s["correct"] = {m: np.stack(v) for m, v in s["correct"].items()}
    return sets


def _sd(values: np.ndarray) -> float:
    """Sample standard deviation over seeds (NaN for a single seed: it has no spread to measure)."""
    return float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def comparison_rows(
    sets: dict[str, dict[str, Any]],
    methods: Sequence[str],
    references: Sequence[str],
    n_boot: int = 2000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per (set, method): n, seeds, accuracy and mean class accuracy (mean, sd over seeds)
    and, per reference, the paired difference, its 95% interval and the McNemar p-value (NaN for a
    set of per-face shares rather than 0/1 flags, where McNemar does not apply)."""
    rows = []
    for set_name, s in sets.items():
        for method in methods:
            correct = s["correct"][method]
            acc = correct.mean(axis=1)
            mca = np.array([mean_class_accuracy(s["labels"], c) for c in correct])
            row = {
                "set": set_name,
                "method": method,
                "n": int(correct.shape[1]),
                "seeds": int(correct.shape[0]),
                "accuracy_mean": float(acc.mean()),
                "accuracy_sd": _sd(acc),
                "mean_class_accuracy_mean": float(mca.mean()),
                "mean_class_accuracy_sd": _sd(mca),
            }
            for ref in references:
                stats = compare(correct, s["correct"][ref], n_boot=n_boot, seed=seed)
                row.update(
                    {
                        f"vs_{ref}_difference": stats["difference"],
                        f"vs_{ref}_ci_low": stats["ci_low"],
                        f"vs_{ref}_ci_high": stats["ci_high"],
                        f"vs_{ref}_p": stats["p_value"],
                    }
                )
            rows.append(row)
    return rows


def _pct(v: float) -> str:
    return f"{100 * v:.2f}"


def _mean_sd(mean: float, sd: float) -> str:
    """ "mean +- sd" in percent; the mean alone for one seed (no spread)."""
    return _pct(mean) if np.isnan(sd) else f"{_pct(mean)} +- {_pct(sd)}"


def _diff(row: dict[str, Any], ref: str) -> str:
    d, lo, hi = (row[f"vs_{ref}_{k}"] for k in ("difference", "ci_low", "ci_high"))
    verdict = "" if lo <= 0 <= hi else (" better" if lo > 0 else " worse")
    return f"{100 * d:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]{verdict}"


def markdown(
    rows: list[dict[str, Any]], references: Sequence[str], seeds: Sequence[int], dataset: str, n_boot: int
) -> str:
    """The table as markdown, one section per evaluated set, with what the statistics mean."""
    lines = [
        f"# {dataset}: methods compared over seeds {list(seeds)}",
        "",
        "Accuracy and mean class accuracy (%): mean +- standard deviation over seeds. "
        f"Difference to a reference (points): mean over seeds, with a 95% paired bootstrap interval "
        f"({n_boot} resamples of the test faces, one draw shared by all seeds, and of the seeds, both with "
        "replacement); p: exact McNemar test on the discordant faces pooled over seeds. An interval that "
        "contains 0 is no difference; 'better'/'worse' mark intervals that exclude it.",
        "",
    ]
    for set_name in dict.fromkeys(r["set"] for r in rows):
        part = [r for r in rows if r["set"] == set_name]
        head = ["method", "accuracy", "mean class acc."]
        for ref in references:
            head += [f"vs {ref}", "p"]
        n_seeds = part[0]["seeds"]
        lines += [
            f"## {set_name} (n={part[0]['n']}, {n_seeds} seed{'s' if n_seeds > 1 else ''})",
            "",
            "| " + " | ".join(head) + " |",
            "|" + " --- |" * len(head),
        ]
        for r in part:
            cells = [
                r["method"],
                _mean_sd(r["accuracy_mean"], r["accuracy_sd"]),
                _mean_sd(r["mean_class_accuracy_mean"], r["mean_class_accuracy_sd"]),
            ]
            for ref in references:
                cells += [
                    "" if r["method"] == ref else _diff(r, ref),
                    "" if r["method"] == ref else f"{r[f'vs_{ref}_p']:.3g}",
                ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_comparison(
    *,
    prediction_paths: Sequence[str | Path],
    methods: Sequence[str],
    seeds: Sequence[int],
    references: Sequence[str],
    main_split: str,
    dataset: str,
    out_md: str | Path,
    out_csv: str | Path,
    out_png: str | Path,
    n_boot: int = 2000,
) -> list[dict[str, Any]]:
    """Build the comparison table of ``methods`` (their predictions.h5 files, method-major) and write
    it as markdown, CSV (one row per set and method) and a plot of ``main_split``."""
    references = [r for r in references if r in methods]
    sets = load_correct(prediction_paths, methods, seeds)
    rows = comparison_rows(sets, methods, references, n_boot=n_boot)
    with atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = markdown(rows, references, seeds, dataset, n_boot)
    with atomic_path(out_md) as tmp:
        Path(tmp).write_text(text)
    main = f"splits/{main_split}"
    part = [r for r in rows if r["set"] == main]
    ref = references[0] if references else methods[0]
    comparison_plot(
        [r["method"] for r in part],
        [r["accuracy_mean"] for r in part],
        [np.nan_to_num(r["accuracy_sd"]) for r in part],  # one seed: no error bar
        [r.get(f"vs_{ref}_difference", 0.0) for r in part],
        [r.get(f"vs_{ref}_ci_low", 0.0) for r in part],
        [r.get(f"vs_{ref}_ci_high", 0.0) for r in part],
        ref,
        out_png,
        title=f"{dataset}, {main}: {len(seeds)} seed{'s' if len(seeds) > 1 else ''}",
    )
    log.info("%s", text)
    return rows
