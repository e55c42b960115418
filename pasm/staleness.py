"""Make-style invalidation: an artifact whose input artifact was deleted is marked out of date.

Snakemake deliberately ignores deleted intermediate files when the files derived from them
exist (so intermediates can be removed to save space). In this pipeline a deleted artifact
means "redo this and what depends on it", so at start-up the direct consumers of a missing
artifact get their modification time set to the epoch; Snakemake then sees them as older than
their other inputs and rebuilds the missing artifact and exactly its dependents. Contents are
not touched. Disable with the config key `rebuild_deleted: false`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable


def artifact_edges(ds_dir: Path) -> list[tuple[Path, list[Path]]]:
    """(consumer, inputs) pairs of one data set's artifacts, for every round present on disk."""
    faces = ds_dir / "faces.h5"
    rounds = sorted(
        int(m.group(1)) for p in ds_dir.glob("round*") if (m := re.fullmatch(r"round(\d+)", p.name)) and p.is_dir()
    )
    edges: list[tuple[Path, list[Path]]] = []
    for r in rounds:
        rd = ds_dir / f"round{r}"
        if r == 0:
            edges.append((rd / "model.pt", [faces]))
        else:
            prev_model = ds_dir / f"round{r - 1}" / "model.pt"
            edges += [(shard, [prev_model]) for shard in sorted((rd / "points").glob("*-of-*.h5"))]
            edges.append((rd / "masked.h5", [rd / "points.h5"]))
            edges.append((rd / "model.pt", [rd / "masked.h5", prev_model]))
        edges.append((rd / "metrics.json", [rd / "model.pt"]))
    return edges


def stale_consumers(results: str | Path, datasets: Iterable[str]) -> list[Path]:
    """Existing artifacts of which at least one input artifact no longer exists."""
    stale = []
    for name in datasets:
        for consumer, inputs in artifact_edges(Path(results) / name):
            if consumer.exists() and any(not p.exists() for p in inputs):
                stale.append(consumer)
    return stale


def mark_stale(paths: Iterable[Path]) -> list[Path]:
    """Set each file's modification time to the epoch so that Snakemake rebuilds it."""
    marked = []
    for p in paths:
        os.utime(p, (0, 0))
        marked.append(p)
    return marked
