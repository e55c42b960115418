"""`pasm summary` reads the metrics files it is given into a per-round table."""

import json

from pasm.app.cli import main


def test_summary_table(tmp_path, capsys):
    paths = []
    for r, acc in ((1, 0.75), (0, 0.5)):  # given out of order: rows follow the files' rounds
        d = tmp_path / f"round{r}"
        (d / "cross" / "ck").mkdir(parents=True)
        split = {"accuracy": acc, "mean_class_accuracy": acc, "n": 4}
        (d / "metrics.json").write_text(json.dumps({"round": r, "splits": {"test": split}}))
        (d / "cross" / "ck" / "metrics.json").write_text(
            json.dumps({"round": r, "target": "ck", "all": split})
        )
        paths += [str(d / "metrics.json"), str(d / "cross" / "ck" / "metrics.json")]
    assert main(["summary", *paths]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| round | test | cross:ck |"
    assert out[2] == "| 0 | 50.00 | 50.00 |" and out[3] == "| 1 | 75.00 | 75.00 |"
    assert main(["summary", str(tmp_path / "nothing.json")]) == 1
    assert "nothing.json" in capsys.readouterr().err
