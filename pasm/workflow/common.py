"""What several stages share: a seed per stage and round, and the rows a run trains on."""

from __future__ import annotations

import numpy as np

from pasm.data.h5store import Faces


def round_seed(seed: int, stage: str, rnd: int) -> int:
    """A distinct, reproducible seed per (stage, round)."""
    offsets = {"pretrain": 0, "search": 1, "finetune": 2}
    return seed * 10_000 + rnd * 10 + offsets[stage]


def train_rows(faces: Faces, split: str, subset: int | None, seed: int) -> np.ndarray:
    """Sorted faces.h5 rows used for training: the split, or its class-stratified, seeded subset."""
    rows = faces.rows(split)
    limit = subset
    if not limit or limit >= len(rows):
        return rows
    rng = np.random.default_rng(seed)
    labels = faces.labels[rows]
    keep = []
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts / len(rows) * limit).astype(int)
    quota[np.argsort(-(counts / len(rows) * limit - quota))[: limit - quota.sum()]] += 1  # largest remainders
    for c, q in zip(classes, quota):
        members = rows[labels == c]
        keep.append(rng.choice(members, size=min(q, len(members)), replace=False))
    return np.sort(np.concatenate(keep))
