"""A deleted artifact marks its direct consumers stale, and nothing else."""

import os

from pasm.staleness import mark_stale, stale_consumers


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")


def _tree(tmp_path):
    ds = tmp_path / "results" / "d"
    _touch(ds / "faces.h5")
    _touch(ds / "round0" / "model.pt")
    _touch(ds / "round0" / "metrics.json")
    for r in (1, 2):
        rd = ds / f"round{r}"
        for name in ("points/1-of-2.h5", "points/2-of-2.h5", "points.h5", "masked.h5", "model.pt", "metrics.json"):
            _touch(rd / name)
    return ds


def test_complete_tree_has_nothing_stale(tmp_path):
    _tree(tmp_path)
    assert stale_consumers(tmp_path / "results", ["d"]) == []


def test_deleted_points_mark_only_the_masked_set(tmp_path):
    ds = _tree(tmp_path)
    (ds / "round2" / "points.h5").unlink()
    assert stale_consumers(tmp_path / "results", ["d"]) == [ds / "round2" / "masked.h5"]


def test_deleted_model_marks_its_metrics_and_next_rounds_inputs(tmp_path):
    ds = _tree(tmp_path)
    (ds / "round1" / "model.pt").unlink()
    got = set(stale_consumers(tmp_path / "results", ["d"]))
    assert got == {ds / "round1/metrics.json", ds / "round2/points/1-of-2.h5", ds / "round2/points/2-of-2.h5",
                   ds / "round2/model.pt"}


def test_mark_stale_sets_epoch_and_keeps_content(tmp_path):
    p = tmp_path / "f"
    p.write_text("keep")
    mark_stale([p])
    assert os.stat(p).st_mtime == 0 and p.read_text() == "keep"
