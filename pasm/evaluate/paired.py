"""Paired statistics of two methods evaluated on the same test faces over several seeds: the
difference of their accuracies with a paired bootstrap interval, and an exact McNemar test.

Inputs are 0/1 "correct" arrays of shape (seeds, faces): row s of both methods comes from seed s,
column i from test face i. The bootstrap also takes per-face scores in [0, 1] (the share of a
face's corrupted copies classified right); McNemar's test takes 0/1 flags only. What the bootstrap
resamples: the test faces (with replacement; one draw of faces shared by every seed, so the
pairing of faces across methods and seeds is kept) and the seeds (with replacement),
independently; each resample's statistic is the mean over the drawn seeds of the accuracy
difference on the drawn faces. The interval is the percentile interval of ``n_boot`` resamples.
McNemar's test pools the discordant pairs of all seeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import binomtest


def _check(a: np.ndarray, b: np.ndarray, binary: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Both as (seeds, faces) float arrays of one shape, of 0/1 (``binary``) or of scores in [0, 1]."""
    a, b = np.atleast_2d(np.asarray(a, dtype=np.float64)), np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"paired results need one (seeds, faces) shape, got {a.shape} and {b.shape}")
    if binary and not (is_binary(a) and is_binary(b)):
        raise ValueError("paired results must be 0/1 'correct' flags")
    if not binary and not (((a >= 0) & (a <= 1)).all() and ((b >= 0) & (b <= 1)).all()):
        raise ValueError("paired scores must lie in [0, 1]")
    return a, b


def is_binary(values: np.ndarray) -> bool:
    """Whether every value is 0 or 1."""
    return bool(np.isin(values, (0, 1)).all())


def bootstrap_difference(
    correct_a: np.ndarray, correct_b: np.ndarray, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """Accuracy of a minus accuracy of b (mean over seeds) and its paired bootstrap interval."""
    a, b = _check(correct_a, correct_b, binary=False)
    diff = a - b  # (seeds, faces)
    n_seeds, n_faces = diff.shape
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    for start in range(0, n_boot, 250):  # bounded memory: 250 x faces weights at a time
        k = min(250, n_boot - start)
        weights = rng.multinomial(n_faces, np.full(n_faces, 1.0 / n_faces), size=k)  # (k, faces)
        per_seed = weights @ diff.T / n_faces  # (k, seeds): each seed's difference on the drawn faces
        drawn = rng.integers(0, n_seeds, size=(k, n_seeds))
        stats[start : start + k] = np.take_along_axis(per_seed, drawn, axis=1).mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(stats, [tail, 100 - tail])
    return {
        "difference": float(diff.mean()),
        "ci_low": float(low),
        "ci_high": float(high),
        "level": level,
        "n_boot": n_boot,
    }


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float]:
    """Exact (binomial) two-sided McNemar test on the pooled pairs: b = a right and b wrong,
    c = a wrong and b right; p = 1 when there is no discordant pair."""
    a, b = _check(correct_a, correct_b)
    only_a = int(((a == 1) & (b == 0)).sum())
    only_b = int(((a == 0) & (b == 1)).sum())
    n = only_a + only_b
    p = 1.0 if n == 0 else float(binomtest(only_a, n, 0.5, alternative="two-sided").pvalue)
    return {"only_a": only_a, "only_b": only_b, "p_value": p}


def compare(correct_a: np.ndarray, correct_b: np.ndarray, **bootstrap: Any) -> dict[str, float]:
    """Both statistics of a against b, in one record; for per-face scores that are not 0/1 flags the
    McNemar fields are NaN."""
    stats = bootstrap_difference(correct_a, correct_b, **bootstrap)
    if is_binary(np.asarray(correct_a)) and is_binary(np.asarray(correct_b)):
        return {**stats, **mcnemar_exact(correct_a, correct_b)}
    return {**stats, "only_a": float("nan"), "only_b": float("nan"), "p_value": float("nan")}
