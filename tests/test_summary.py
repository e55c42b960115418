"""`pasm summary` reads metrics files into a per-round table."""

import json

from pasm.app.cli import main


def test_summary_table(tmp_path, capsys):
    for r, acc in ((0, 0.5), (1, 0.75)):
        d = tmp_path / f"round{r}"
        (d / "cross" / "ck").mkdir(parents=True)
        split = {"accuracy": acc, "mean_class_accuracy": acc, "n": 4}
        (d / "metrics.json").write_text(json.dumps({"splits": {"test": split}}))
        (d / "cross" / "ck" / "metrics.json").write_text(json.dumps({"all": split}))
    assert main(["summary", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| round | test | cross:ck |"
    assert out[2] == "| 0 | 50.00 | 50.00 |" and out[3] == "| 1 | 75.00 | 75.00 |"
    assert main(["summary", str(tmp_path / "nothing")]) == 1
