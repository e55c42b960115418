"""rounds: auto adds rounds while validation accuracy improves by more than the margin; fixed rounds as
before."""

import json

import pytest

from pasm.workflow.evaluate import final, round_decision
from pasm.workflow.rounds import decide, final_round


def run_auto(accuracies, margin=0.0, max_rounds=10):
    """Replay the workflow's loop: evaluate round r, ask decide, build round r+1 while it says so."""
    built = [accuracies[0]]
    while decide(built, "auto", max_rounds, margin)["continue"] and len(built) < len(accuracies):
        built.append(accuracies[len(built)])
    return built


def test_auto_stops_when_validation_stops_improving():
    accs = [0.60, 0.64, 0.66, 0.65, 0.70, 0.71]  # round 3 drops: stop there even though 4 would rise
    built = run_auto(accs)
    assert built == accs[:4]
    assert final_round(built) == 2


def test_auto_margin_and_max_rounds():
    accs = [0.60, 0.62, 0.625, 0.70]
    assert run_auto(accs, margin=0.01) == accs[:3]  # +0.005 is not more than the margin
    assert run_auto(accs, margin=0.0) == accs  # each step improves (the replay runs out of rounds)
    assert decide(accs, "auto", 10, 0.0)["continue"]
    assert run_auto([0.5, 0.6, 0.7, 0.8, 0.9], max_rounds=2) == [0.5, 0.6, 0.7]
    assert run_auto([0.5, 0.4]) == [0.5, 0.4] and final_round([0.5, 0.4]) == 0  # round 1 always runs


def test_fixed_rounds_ignore_accuracy():
    assert [decide([0.5] * (r + 1), 3, 10, 0.0)["continue"] for r in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert final_round([0.7, 0.7, 0.69]) == 0  # ties go to the earlier round


@pytest.mark.parametrize("rounds", ["auto", 2])
def test_decision_and_final_files(tmp_path, rounds):
    accs = [0.5, 0.6, 0.55]
    metrics = []
    for r, a in enumerate(accs):
        p = tmp_path / f"round{r}" / "metrics.json"
        p.parent.mkdir()
        p.write_text(json.dumps({"splits": {"val": {"accuracy": a}}}))
        metrics.append(p)
    decisions = []
    for r in range(len(accs)):
        out = tmp_path / "rounds" / f"decision{r}.json"
        out.parent.mkdir(exist_ok=True)
        result = round_decision(
            metrics=metrics[: r + 1], val_split="val", rounds=rounds, max_rounds=6, margin=0.0, decision=out
        )
        decisions.append(out)
        if not result["continue"]:
            break
    assert len(decisions) == 3 and not json.loads(decisions[-1].read_text())["continue"]
    models = [f"m{r}.pt" for r in range(3)]
    result = final(decisions=decisions, models=models, final=tmp_path / "final.json")
    assert result["final_round"] == 1 and result["rounds_built"] == 2
    assert result["final_model"] == "m1.pt"  # the model file the workflow declared for that round
    assert json.loads((tmp_path / "final.json").read_text()) == result
    with pytest.raises(ValueError, match="2 models for 3 evaluated rounds"):
        final(decisions=decisions, models=models[:2], final=tmp_path / "final.json")
