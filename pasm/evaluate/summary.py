"""Per-round accuracy table of a run, read from the metrics files it is given."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence


def collect(paths: Sequence[str | Path]) -> list[dict]:
    """One row per (round, split, subset or cross target) with accuracy, mean class accuracy and n,
    from rounds' metrics.json and cross-data-set results (told apart by their ``target`` key)."""
    rows = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        if "target" in data:
            named = [(f"cross:{data['target']}", data["all"])]
        else:
            named = [*data["splits"].items(), *data.get("subsets", {}).items()]
        for split, m in named:
            rows.append(
                {
                    "round": int(data["round"]),
                    "split": split,
                    "accuracy": m["accuracy"],
                    "mean_class_accuracy": m["mean_class_accuracy"],
                    "n": m["n"],
                }
            )
    return sorted(rows, key=lambda row: row["round"])  # stable: each round's sets in the order given


def format_table(rows: list[dict]) -> str:
    """Markdown table: rounds as rows, splits as columns (accuracy, in percent)."""
    splits = list(dict.fromkeys(r["split"] for r in rows))
    rounds = sorted({r["round"] for r in rows})
    acc = {(r["round"], r["split"]): r["accuracy"] for r in rows}
    lines = ["| round | " + " | ".join(splits) + " |", "| --- |" + " --- |" * len(splits)]
    for rnd in rounds:
        cells = [f"{100 * acc[(rnd, s)]:.2f}" if acc.get((rnd, s)) is not None else "" for s in splits]
        lines.append(f"| {rnd} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
