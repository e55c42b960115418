"""Per-round accuracy table of a run, read from its metrics files."""

from __future__ import annotations

import json
import re
from pathlib import Path


def collect(ds_dir: str | Path) -> list[dict]:
    """One row per (round, split, subset or cross target) with accuracy, mean class accuracy and n."""
    rows = []
    ds_dir = Path(ds_dir)
    rounds = sorted(
        (int(m.group(1)), p) for p in ds_dir.glob("round*") if (m := re.fullmatch(r"round(\d+)", p.name))
    )
    for r, path in rounds:
        metrics = path / "metrics.json"
        if metrics.exists():
            data = json.loads(metrics.read_text())
            for split, m in [*data["splits"].items(), *data.get("subsets", {}).items()]:
                rows.append({"round": r, "split": split, "accuracy": m["accuracy"],
                             "mean_class_accuracy": m["mean_class_accuracy"], "n": m["n"]})
        for cross in sorted(path.glob("cross/*/metrics.json")):
            m = json.loads(cross.read_text())["all"]
            rows.append({"round": r, "split": f"cross:{cross.parent.name}", "accuracy": m["accuracy"],
                         "mean_class_accuracy": m["mean_class_accuracy"], "n": m["n"]})
    return rows


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
