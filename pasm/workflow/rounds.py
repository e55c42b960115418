"""How many PASM rounds to run: a fixed number, or (rounds: auto) until validation accuracy stops improving.

The paper leaves the number of rounds to be set by hand (its second stated limitation); with
``rounds: auto`` the workflow evaluates round r, then asks ``decide`` whether round r+1 is worth
building. The final model is the evaluated round with the best validation accuracy.
"""

from __future__ import annotations

from typing import Any, Sequence


def decide(
    val_accuracies: Sequence[float], rounds: int | str, max_rounds: int, margin: float
) -> dict[str, Any]:
    """Whether to build the round after the last of ``val_accuracies`` (rounds 0..r), and why."""
    r = len(val_accuracies) - 1
    if rounds != "auto":
        go = r < int(rounds)
        return {"continue": go, "reason": f"fixed rounds: {rounds}"}
    if r >= max_rounds:
        return {"continue": False, "reason": f"reached max_rounds={max_rounds}"}
    if r == 0:
        return {"continue": True, "reason": "round 0 is the pretrained model; round 1 always runs"}
    gain = val_accuracies[r] - val_accuracies[r - 1]
    if gain > margin:
        return {"continue": True, "reason": f"round {r} raised validation accuracy by {gain:+.4f} > {margin}"}
    return {"continue": False, "reason": f"round {r} changed validation accuracy by {gain:+.4f} <= {margin}"}


def final_round(val_accuracies: Sequence[float]) -> int:
    """The evaluated round with the highest validation accuracy (the earliest on ties)."""
    return max(range(len(val_accuracies)), key=lambda r: (val_accuracies[r], -r))
