"""What a reader sees: subsets evaluated inside the evaluation splits, accuracy over rounds, point
densities."""

import json

import numpy as np
import pytest
import torch

from pasm.data.h5store import Faces, write_faces, write_table
from pasm.data.labels import CLASSES
from pasm.evaluate.metrics import classification_metrics
from pasm.evaluate.point_density import class_densities, mean_grey_face, point_histogram
from pasm.evaluate.report import accuracy_series, metric_rows
from pasm.nn.models import build_model, save_model
from pasm.workflow.evaluate import evaluate, evaluation_subsets, point_density

SPLITS = np.array(["train"] * 4 + ["val"] * 2 + ["test"] * 6)
LABELS = np.array([0, 3, 6, 3, 3, 0, 3, 3, 0, 6, 3, 1])


def _faces(n_img_side=16):
    n = len(LABELS)
    subsets = {
        "occlusion": np.isin(np.arange(n), [6, 7, 8]),  # inside test, like RAF-DB's lists
        "fold0": np.isin(np.arange(n), [0, 1]),  # train rows only, like a CK+ training fold
        "fold1": np.isin(np.arange(n), [2, 9, 10]),  # spans train and test
    }
    images = np.random.default_rng(0).integers(0, 256, (n, n_img_side, n_img_side, 3), dtype=np.uint8)
    return Faces(
        images=images,
        labels=LABELS,
        splits=SPLITS,
        sources=np.array([str(i) for i in range(n)]),
        status=np.array(["pre-aligned"] * n),
        subsets=subsets,
    )


def _constant_model(path, cls):
    """A real network whose bias makes it answer `cls` for every face."""
    torch.manual_seed(0)
    model = build_model("compact", 7, width=4)
    bias = torch.zeros(7)
    bias[cls] = 50.0
    with torch.no_grad():
        model.fc.bias.copy_(bias)
    save_model(
        path,
        model,
        {
            "arch": "compact",
            "width": 4,
            "classes": list(CLASSES),
            "image_size": 16,
            "mean": [0.5] * 3,
            "std": [0.25] * 3,
        },
    )


def test_subsets_are_restricted_to_the_evaluation_splits():
    rows, skipped = evaluation_subsets(_faces(), ["test"])
    assert {k: v.tolist() for k, v in rows.items()} == {"occlusion": [6, 7, 8], "fold1": [9, 10]}
    assert list(skipped) == ["fold0"] and "evaluation splits ['test']" in skipped["fold0"]
    rows, _ = evaluation_subsets(_faces(), ["test", "occlusion"])  # named as an eval split: scored as one
    assert "occlusion" not in rows


def test_evaluate_scores_splits_subsets_and_draws_the_round_pictures(tmp_path):
    write_faces(tmp_path / "faces.h5", _faces())
    results, metrics, crosses = {}, [], []
    picture = tmp_path / "density.png"
    picture.write_bytes(b"\x89PNG not really")
    for rnd, cls in ((0, 0), (1, 3)):  # round 0 always answers angry, round 1 always happy
        d = tmp_path / "d" / f"round{rnd}"
        _constant_model(tmp_path / f"m{rnd}.pt", cls)
        (d / "cross" / "ck").mkdir(parents=True)
        cross = classification_metrics(
            np.zeros(4, np.int64), np.array([0] * (rnd + 1) + [1] * (3 - rnd)), CLASSES
        )
        cross_path = d / "cross" / "ck" / "metrics.json"  # accuracy 0.25, then 0.5
        cross_path.write_text(json.dumps({"round": rnd, "target": "ck", "all": cross}))
        results[rnd] = evaluate(
            faces=tmp_path / "faces.h5",
            model=tmp_path / f"m{rnd}.pt",
            earlier=list(metrics),
            earlier_cross=list(crosses),
            cross=[cross_path],
            density=[picture] if rnd else [],
            metrics=d / "metrics.json",
            predictions=d / "predictions.h5",
            confusion=d / "confusion.png",
            rounds_png=d / "accuracy_per_round.png",
            rounds_html=d / "accuracy_per_round.html",
            round_html=d / "metrics.html",
            ds="d",
            r=rnd,
            val_split="val",
            eval_splits=["test"],
            device="cpu",
        )
        metrics.append(d / "metrics.json")
        crosses.append(cross_path)
    res = results[1]
    assert json.loads((tmp_path / "d/round1/metrics.json").read_text()) == json.loads(json.dumps(res))
    assert set(res["splits"]) == {"val", "test"} and set(res["subsets"]) == {"occlusion", "fold1"}
    assert list(res["subsets_not_evaluated"]) == ["fold0"]
    occ = res["subsets"]["occlusion"]  # rows 6, 7, 8: happy, happy, angry; everything predicted happy
    assert occ["n"] == 3 and occ["within_splits"] == ["test"]
    assert np.isclose(occ["accuracy"], 2 / 3)
    assert occ["confusion_matrix"][0][3] == 1 and occ["confusion_matrix"][3][3] == 2
    assert (
        np.isclose(occ["per_class"]["happy"]["precision"], 2 / 3)
        and occ["per_class"]["angry"]["precision"] is None
    )
    assert res["subsets"]["fold1"]["n"] == 2  # row 2 is a training row: not scored
    assert res["splits"]["test"]["support"]["happy"] == 3 and np.isclose(
        res["splits"]["test"]["accuracy"], 3 / 6
    )
    assert np.isclose(results[0]["splits"]["test"]["accuracy"], 1 / 6)
    for name in ("confusion.png", "accuracy_per_round.png"):
        assert (tmp_path / "d/round1" / name).stat().st_size > 1000
    table = (tmp_path / "d/round1/accuracy_per_round.html").read_text()
    assert "occlusion (n=3)" in table and "cross:ck (n=4)" in table
    assert (
        "<tr><td>0</td><td>50.00</td><td>16.67</td>" in table
    )  # val, test of round 0, read from its metrics.json
    assert (
        "<tr><td>0</td><td>50.00</td><td>16.67</td><td>0.00</td><td>33.33</td><td>25.00</td></tr>" in table
    )  # its cross:ck
    # val, test, fold1, occlusion, cross:ck
    assert (
        "<tr><td>1</td><td>50.00</td><td>50.00</td><td>50.00</td><td>66.67</td><td>50.00</td></tr>" in table
    )
    assert "<caption>macro F1 (%)</caption>" in table
    per_class = (tmp_path / "d/round1/metrics.html").read_text()
    assert per_class.count("per class</caption>") == 5  # val, test, occlusion, fold1, cross:ck
    assert "round 1: where the mined points fell" in per_class and "data:image/png;base64,iVBOR" in per_class
    assert "data:image/png" not in (tmp_path / "d/round0/metrics.html").read_text()


def test_metric_rows_and_series_over_rounds():
    m0 = {"splits": {"test": {"n": 5, "accuracy": 0.4, "mean_class_accuracy": 0.3, "macro_f1": 0.2}}}
    m1 = {
        "splits": {"test": {"n": 5, "accuracy": 0.6, "mean_class_accuracy": 0.5, "macro_f1": 0.4}},
        "subsets": {"pose30": {"n": 2, "accuracy": 0.5, "mean_class_accuracy": 0.5, "macro_f1": 0.5}},
    }
    rows = metric_rows(0, m0, {}) + metric_rows(1, m1, {"ck": {"all": m1["splits"]["test"]}})
    assert [(r["round"], r["name"], r["kind"]) for r in rows] == [
        (0, "test", "split"),
        (1, "test", "split"),
        (1, "pose30", "subset"),
        (1, "cross:ck", "cross"),
    ]
    rounds, series = accuracy_series(rows)
    assert rounds == [0, 1] and series == {"test": [0.4, 0.6], "pose30": [None, 0.5], "cross:ck": [None, 0.6]}
    assert accuracy_series(rows, "macro_f1")[1]["test"] == [0.2, 0.4]


def test_point_density_panels_per_class(tmp_path):
    n, side = 10, 20
    labels = np.array([0, 0, 0, 3, 3, 6, 6, 2, 2, 2])
    grey = np.arange(n, dtype=np.uint8) * 20
    images = np.repeat(grey[:, None, None, None], side * side * 3).reshape(n, side, side, 3).astype(np.uint8)
    write_faces(
        tmp_path / "faces.h5",
        Faces(
            images=images,
            labels=labels,
            splits=np.array(["train"] * n),
            sources=np.array([str(i) for i in range(n)]),
            status=np.array(["x"] * n),
        ),
    )
    index = np.array([1, 2, 3, 4, 6])  # training rows with points: classes 0, 0, 3, 3, 6
    x, y = np.array([5, 5, 14, 14, 10]), np.array([4, 4, 12, 12, 9])
    write_table(tmp_path / "points.h5", {"index": index, "x": x, "y": y, "rgb": np.zeros((5, 3), np.uint8)})
    dens, counts = point_density(
        faces=tmp_path / "faces.h5",
        points=tmp_path / "points.h5",
        density=tmp_path / "point_density.png",
        ds="d",
        r=1,
        sigma=1.0,
    )
    assert (tmp_path / "point_density.png").stat().st_size > 1000
    assert dens.shape == (len(CLASSES) + 1, side, side)
    assert counts.tolist() == [2, 0, 0, 2, 0, 0, 1, 5]
    for c in range(len(CLASSES) + 1):
        assert np.isclose(dens[c].sum(), 1.0 if counts[c] else 0.0)
    assert np.unravel_index(dens[0].argmax(), dens[0].shape) == (4, 5)  # (row y, column x)
    assert np.unravel_index(dens[3].argmax(), dens[3].shape) == (12, 14)
    assert np.unravel_index(dens[6].argmax(), dens[6].shape) == (9, 10)
    assert np.allclose(dens[-1], (2 * dens[0] + 2 * dens[3] + dens[6]) / 5)  # 'all' pools the classes
    assert not dens[2].any()  # class 2 has faces but no points in this round


def test_mean_face_and_histogram_inputs():
    images = np.zeros((5, 3, 3, 3), np.uint8)
    images[:, :, :, :] = (np.arange(5) * 50)[:, None, None, None].astype(np.uint8)
    assert np.allclose(mean_grey_face(images, np.array([1, 3, 4]), chunk=2), (50 + 150 + 200) / 3 / 255)
    with pytest.raises(ValueError, match="outside"):
        point_histogram(np.array([3]), np.array([0]), 3, 3)
    dens, counts = class_densities(np.array([1]), np.array([2]), np.array([1]), 2, 3, 3, sigma=0.5)
    assert counts.tolist() == [0, 1, 1] and np.isclose(dens[1].sum(), 1) and dens[1][2, 1] == dens[1].max()
