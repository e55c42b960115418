"""How many PASM rounds to run: a fixed number, or (rounds: auto) until validation accuracy stops improving.

The paper leaves the number of rounds to be set by hand (its second stated limitation); with
``rounds: auto`` the workflow evaluates round r, then asks ``decide`` whether round r+1 is worth
building. The final model is the evaluated round with the best validation accuracy.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

from pasm.data.atomic import atomic_path

log = logging.getLogger(__name__)


def decide(val_accuracies: Sequence[float], rounds: int | str, max_rounds: int, margin: float) -> dict[str, Any]:
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


def val_accuracies(metrics_paths: Sequence[str | Path], val_split: str) -> list[float]:
    """Validation accuracy of each round's metrics.json, in the given order."""
    return [json.loads(Path(p).read_text())["splits"][val_split]["accuracy"] for p in metrics_paths]


def write_decision(*, metrics_paths: Sequence[str | Path], val_split: str, rounds: int | str, max_rounds: int,
                   margin: float, out_json: str | Path) -> dict[str, Any]:
    """Decide on the round after the last metrics file and write the decision (read by the workflow)."""
    accs = val_accuracies(metrics_paths, val_split)
    result = {"round": len(accs) - 1, "val_accuracy": accs, **decide(accs, rounds, max_rounds, margin)}
    with atomic_path(out_json) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n")
    log.info("round %d: %s (%s)", result["round"], "continue" if result["continue"] else "stop", result["reason"])
    return result


def write_final(*, decision_paths: Sequence[str | Path], out_json: str | Path) -> dict[str, Any]:
    """Record the rounds built and the final round (best validation accuracy) in final.json."""
    last = json.loads(Path(decision_paths[-1]).read_text())
    accs = last["val_accuracy"]
    final = final_round(accs)
    result = {"final_round": final, "final_model": str(Path(out_json).parent / f"round{final}" / "model.pt"),
              "rounds_built": len(accs) - 1, "val_accuracy": accs, "stopped_because": last["reason"]}
    with atomic_path(out_json) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n")
    log.info("final round %d of %d built (%s)", final, result["rounds_built"], result["stopped_because"])
    return result
