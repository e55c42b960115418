"""The real Snakemake workflow on a tiny demo: artifacts, caching, rebuild scope, dry run, bad config."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml
from conftest import REPO, run_snakemake, write_config

from pasm.data.h5store import read_faces, read_groups, read_table
from pasm.evaluate.metrics import confusion_matrix
from pasm.nn.models import file_sha256, load_model
from pasm.train.masking import patch_bounds

pytestmark = pytest.mark.workflow  # runs Snakemake or the whole pipeline: make test-fast leaves it out

TINY = {
    "seed": 3,
    "device": "cpu",
    "threads": 1,
    "datasets": {
        "tiny": {
            "format": "demo",
            "root": "data/tiny",
            "image_size": 32,
            "eval_splits": ["test", "occlusion"],
            "demo": {"per_class": {"train": 6, "val": 2, "test": 3, "occlusion": 3}},
            "model": {"arch": "compact", "width": 4},
            "pretrain": {"epochs": 2, "batch_size": 16, "lr": 0.05, "lr_milestones": [2], "crop_pad": 2},
            "finetune": {"epochs": 1, "batch_size": 16, "lr": 0.01, "lr_milestones": [1], "crop_pad": 2},
        }
    },
    "method": {
        "rounds": 2,
        "mask_size": 5,
        "shards": 2,
        "search": {"population": 6, "generations": 2},
        "ablation": {"mask_sizes": [3], "betas": [0.5], "cross_network": {"arch": "compact", "width": 4}},
    },
}


def job_counts(stdout: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a Snakemake dry run."""
    counts = {}
    block = stdout.split("Job stats:", 1)[1] if "Job stats:" in stdout else ""
    for line in block.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("tiny")
    write_config(wd, TINY)
    run_snakemake(wd, "--cores", "2", "results/tiny/round2/metrics.json")
    return wd


def test_faces_artifact(tiny_run):
    faces = read_faces(tiny_run / "results/tiny/faces.h5")
    assert faces.images.shape == (7 * (6 + 2 + 3 + 3), 32, 32, 3) and faces.images.dtype == np.uint8
    assert sorted(set(faces.splits)) == ["occlusion", "test", "train", "val"]
    assert set(faces.labels.tolist()) == set(range(7))
    assert faces.attrs["classes"][0] == "angry" and faces.attrs["classes"][6] == "neutral"
    assert (faces.status == "pre-aligned").all()


@pytest.mark.parametrize("rnd", [1, 2])
def test_points_cover_the_training_set(tiny_run, rnd):
    base = tiny_run / f"results/tiny/round{rnd}"
    assert sorted(p.name for p in (base / "points").iterdir()) == ["1-of-2.h5", "2-of-2.h5"]
    pts, attrs = read_table(base / "points.h5")
    train_rows = read_faces(tiny_run / "results/tiny/faces.h5", with_images=False).rows("train")
    assert pts["index"].tolist() == train_rows.tolist()
    assert ((0 <= pts["x"]) & (pts["x"] < 32) & (0 <= pts["y"]) & (pts["y"] < 32)).all()
    assert pts["rgb"].shape == (len(train_rows), 3) and pts["rgb"].dtype == np.uint8
    assert (pts["queries"] >= 1).all() and (pts["queries"] <= 1 + 6 * 3).all()
    assert attrs["model_sha256"] == file_sha256(tiny_run / f"results/tiny/round{rnd - 1}/model.pt")


def test_masks_are_centred_on_points_and_filled(tiny_run):
    faces = read_faces(tiny_run / "results/tiny/faces.h5")
    m, attrs = read_table(tiny_run / "results/tiny/round1/masked.h5")
    assert attrs["mask_size"] == 5
    y0, y1, x0, x1 = patch_bounds(m["x"], m["y"], 5, 32, 32)
    for i, row in enumerate(m["index"]):
        img, clean = m["images"][i], faces.images[row]
        inside = np.zeros((32, 32), bool)
        inside[y0[i] : y1[i], x0[i] : x1[i]] = True
        assert inside[m["y"][i], m["x"][i]]
        assert (img[inside] == m["rgb"][i]).all()
        assert (img[~inside] == clean[~inside]).all()
    assert (tiny_run / "results/tiny/round1/masked_examples.png").stat().st_size > 1000


def test_each_round_is_taught_by_the_previous_one(tiny_run):
    base = tiny_run / "results/tiny"
    for rnd in (1, 2):
        _, meta = load_model(base / f"round{rnd}/model.pt")
        assert meta["round"] == rnd
        assert meta["teacher_sha256"] == file_sha256(base / f"round{rnd - 1}/model.pt")
    _, meta0 = load_model(base / "round0/model.pt")
    assert meta0["classes"][3] == "happy" and meta0["image_size"] == 32


def test_metrics_for_every_round(tiny_run):
    for rnd in (0, 1, 2):
        metrics = json.loads((tiny_run / f"results/tiny/round{rnd}/metrics.json").read_text())
        assert metrics["round"] == rnd
        assert set(metrics["splits"]) == {"val", "test", "occlusion"}
        test = metrics["splits"]["test"]
        assert test["n"] == 21 and np.array(test["confusion_matrix"]).sum() == 21
        assert set(test) >= {
            "accuracy",
            "mean_class_accuracy",
            "per_class_accuracy",
            "confusion_matrix",
            "macro_f1",
            "per_class",
            "confusion_matrix_normalized",
        }
        assert 0.0 <= test["accuracy"] <= 1.0
        assert metrics["subsets"] == {} and metrics["subsets_not_evaluated"] == {}  # the demo has no subsets
        base = tiny_run / f"results/tiny/round{rnd}"
        pictures = ["confusion.png", "accuracy_per_round.png", *(["point_density.png"] if rnd else [])]
        for name in pictures + ["accuracy_per_round.html", "metrics.html"]:
            assert (base / name).stat().st_size > 1000, name
        assert f"<tr><td>{rnd}</td>" in (base / "accuracy_per_round.html").read_text()
        assert (tiny_run / f"results/tiny/logs/round{rnd}/evaluate.log").read_text().strip()


def test_rerun_does_nothing_and_forcerun_of_points_reruns_only_dependents(tiny_run):
    """Redoing an artifact is Snakemake's own -R/--forcerun: the job that makes it and what follows, nothing
    upstream; the workflow touches no file while it is read (no mtime rewrites, even after a deletion)."""
    target = "results/tiny/round2/metrics.json"
    proc = run_snakemake(tiny_run, "-n", "--cores", "2", target)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    points = tiny_run / "results/tiny/round2/points.h5"
    masked = tiny_run / "results/tiny/round2/masked.h5"
    points.unlink()
    before = masked.stat().st_mtime_ns
    run_snakemake(tiny_run, "-n", "--cores", "2", target)
    assert masked.stat().st_mtime_ns == before  # reading the workflow changed nothing on disk
    proc = run_snakemake(tiny_run, "-n", "--cores", "2", target, "-R", "results/tiny/round2/points.h5")
    assert job_counts(proc.stdout + proc.stderr) == {
        "gather_points": 1,
        "masked_samples": 1,
        "point_density": 1,
        "finetune": 1,
        "evaluate": 1,
    }
    run_snakemake(tiny_run, "--cores", "2", target, "-R", "results/tiny/round2/points.h5")
    assert points.exists()
    proc = run_snakemake(tiny_run, "-n", "--cores", "2", target)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_report_holds_every_picture_and_table(tiny_run):
    run_snakemake(tiny_run, "--report", "report.html", "results/tiny/round2/metrics.json")
    page = (tiny_run / "report.html").read_text()
    for name in (
        "confusion.png",
        "accuracy_per_round.png",
        "point_density.png",
        "masked_examples.png",
        "accuracy_per_round.html",
        "metrics.html",
    ):
        assert name in page, name
    assert (
        "Point Adversarial Self Mining" in page and "Configuration of this run" in page
    )  # report/workflow.rst
    assert "per_class" in page.split("Configuration of this run", 1)[1]  # the tiny config's demo block
    assert "mined points" in page.lower()  # a caption


def test_dry_run_of_the_demo_target(tmp_path):
    write_config(tmp_path, yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    proc = run_snakemake(tmp_path, "-n", "--cores", "2", "results/demo/round3/metrics.json")
    shards = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["method"]["shards"]
    assert job_counts(proc.stdout + proc.stderr) == {
        "demo_images": 1,
        "faces": 1,
        "pretrain": 1,
        "search_points": 3 * shards,
        "gather_points": 3,
        "masked_samples": 3,
        "point_density": 3,
        "finetune": 3,
        "evaluate": 4,
    }
    assert not (tmp_path / "results").exists()


def test_bad_config_is_rejected_before_any_job(tmp_path):
    bad = {
        **TINY,
        "method": {**TINY["method"], "beta": "a lot", "search": {"population": 6, "generatoins": 2}},
    }
    write_config(tmp_path, bad)
    proc = run_snakemake(tmp_path, "-n", "--cores", "1", check=False)
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert "method.beta: 'a lot' is not of type 'number'" in err
    assert "method.search: Additional properties are not allowed ('generatoins' was unexpected)" in err
    assert not (tmp_path / "results").exists()


def test_predictions_match_the_metrics_exactly(tiny_run):
    """predictions.h5 beside every metrics.json holds each evaluated face's logits, label and row: its
    accuracy is metrics.json's, to the last bit, for every split of every round and cross target."""
    faces = read_faces(tiny_run / "results/tiny/faces.h5", with_images=False)
    for rnd in (0, 1, 2):
        base = tiny_run / f"results/tiny/round{rnd}"
        metrics = json.loads((base / "metrics.json").read_text())
        groups, attrs = read_groups(base / "predictions.h5")
        assert set(groups) == {f"splits/{s}" for s in metrics["splits"]} and attrs["round"] == rnd
        for name, m in metrics["splits"].items():
            g = groups[f"splits/{name}"]
            assert g["logits"].shape == (m["n"], 7) and g["logits"].dtype == np.float32
            assert (g["rows"] == faces.rows(name)).all() and (g["labels"] == faces.labels[g["rows"]]).all()
            assert float(np.mean(g["logits"].argmax(1) == g["labels"])) == m["accuracy"]
            assert np.array_equal(
                confusion_matrix(g["labels"], g["logits"].argmax(1), 7), m["confusion_matrix"]
            )


def test_ablations_side_by_side(tiny_run):
    run_snakemake(tiny_run, "--cores", "2", "results/tiny/ablation/table.md")
    base = tiny_run / "results/tiny/ablation"
    table = (base / "table.csv").read_text().splitlines()
    methods = [line.split(",")[0] for line in table[1:]]
    assert methods == [
        "round 0 (pretrained)",
        "PASM round 1",
        "random_erasing",
        "adv_erasing",
        "pasm_noteacher",
        "pasm_seeded",
        "cross_network",
        "mask_size_3",
        "beta_0.5",
    ]
    assert "| random_erasing |" in (base / "table.md").read_text()
    round0 = file_sha256(tiny_run / "results/tiny/round0/model.pt")
    for variant in methods[2:]:
        _, meta = load_model(base / variant / "model.pt")
        assert meta["ablation"] == variant
        expected_teacher = (
            file_sha256(base / "cross_network/round0/model.pt") if variant == "cross_network" else round0
        )  # every variant starts from the same round-0 model
        assert meta["teacher_sha256"] == expected_teacher
        assert meta["beta"] == {
            "pasm_noteacher": 0.0,
            "cross_network": 0.0,
            "random_erasing": 0.0,
            "adv_erasing": 0.0,
            "beta_0.5": 0.5,
        }.get(variant, 0.1)
        assert not list((base / variant).glob("*.train_state.pt"))  # removed once the model is written
        groups, _ = read_groups(base / variant / "predictions.h5")
        accuracy = json.loads((base / variant / "metrics.json").read_text())["splits"]["test"]["accuracy"]
        assert (
            float(np.mean(groups["splits/test"]["logits"].argmax(1) == groups["splits/test"]["labels"]))
            == accuracy
        )
    _, masked_attrs = read_table(base / "mask_size_3/masked.h5")
    assert masked_attrs["mask_size"] == 3
    seeded, attrs = read_table(base / "pasm_seeded/points.h5")
    assert attrs["search"]["strategy"] == "seeded" and len(seeded["index"]) == 42


def test_final_json_fixed_and_auto_rounds(tiny_run):
    run_snakemake(tiny_run, "--cores", "2", "results/tiny/final.json")
    final = json.loads((tiny_run / "results/tiny/final.json").read_text())
    assert final["rounds_built"] == 2 and final["stopped_because"] == "fixed rounds: 2"
    accs = final["val_accuracy"]
    assert len(accs) == 3 and final["final_round"] == max(range(3), key=lambda r: (accs[r], -r))
    # rounds: auto with max_rounds 2 reuses the built rounds (their jobs do not depend on these keys)
    auto = {**TINY, "method": {**TINY["method"], "rounds": "auto", "max_rounds": 2}}
    (tiny_run / "auto.yaml").write_text(yaml.safe_dump(auto))
    proc = run_snakemake(
        tiny_run, "--cores", "2", "results/tiny/final.json", "--configfile", str(tiny_run / "auto.yaml")
    )
    assert (
        "rule finetune" not in proc.stdout + proc.stderr
        and "rule search_points" not in proc.stdout + proc.stderr
    )
    final = json.loads((tiny_run / "results/tiny/final.json").read_text())
    assert final["rounds_built"] <= 2 and final["final_round"] <= final["rounds_built"]
