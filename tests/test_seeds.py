"""Replicates over seeds: a real 2-seed Snakemake run of the tiny demo builds results/{ds}/comparison.*,
every seed in its own folder over one shared faces.h5, and changing one seed reruns only its jobs."""

from __future__ import annotations

import copy
import csv
import re

import pytest
from conftest import run_snakemake, write_config
from test_workflow import TINY, job_counts

pytestmark = pytest.mark.workflow  # runs Snakemake or the whole pipeline: make test-fast leaves it out

SEEDS = {
    **copy.deepcopy(TINY),
    "seeds": [1, 2],
    "method": {
        **copy.deepcopy(TINY["method"]),
        "rounds": 1,
        "shards": 1,
        "ablation": {"variants": ["random_erasing"], "mask_sizes": [], "betas": []},
    },
    "robustness": {
        "fills": ["grey", "noise"],
        "occlusions": ["eyes", "lower"],
        "patches": [25],
        "corruptions": ["gaussian_noise", "jpeg"],
        "severities": [1, 3],
        "attack_faces": 10,
        "attacks": {
            "ranked": {"strategy": "ranked", "top_pixels": 4, "local_rounds": 1},
            "de": {"strategy": "de", "population": 6, "generations": 2, "block": 4},
        },
    },
}
PER_SEED = {
    "pretrain": 1,
    "search_points": 1,
    "gather_points": 1,
    "masked_samples": 1,
    "point_density": 1,
    "finetune": 1,
    "evaluate": 2,
    "ablation_train": 1,
    "ablation_evaluate": 1,
}


@pytest.fixture(scope="module")
def seeds_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("seeds")
    write_config(wd, SEEDS)
    run_snakemake(wd, "--cores", "2", "results/tiny/comparison.md")
    return wd


def test_comparison_of_two_seeds(seeds_run):
    base = seeds_run / "results/tiny"
    assert sorted(p.name for p in base.iterdir() if p.name.startswith("seed")) == ["seed1", "seed2"]
    assert not (base / "round0").exists()  # with seeds, every run lives in its seed's folder
    rows = list(csv.DictReader((base / "comparison.csv").open()))
    sets = ["splits/val", "splits/test", "splits/occlusion"]
    assert [(r["set"], r["method"]) for r in rows] == [
        (s, m) for s in sets for m in ("round0", "round1", "random_erasing")
    ]
    for r in rows:
        assert r["seeds"] == "2" and r["n"] in ("14", "21")
        if r["method"] == "round0":  # a method against itself: no difference, p = 1
            assert float(r["vs_round0_difference"]) == 0 and float(r["vs_round0_p"]) == 1
            assert float(r["vs_round0_ci_low"]) == 0 == float(r["vs_round0_ci_high"])
        assert (
            float(r["vs_round0_ci_low"]) <= float(r["vs_round0_difference"]) <= float(r["vs_round0_ci_high"])
        )
    md = (base / "comparison.md").read_text()
    assert "seeds [1, 2]" in md and "| random_erasing |" in md and "## splits/test (n=21, 2 seeds)" in md
    assert (base / "comparison.png").stat().st_size > 5000


def test_the_seeds_differ_and_share_their_faces(seeds_run):
    from pasm.nn.models import load_model

    base = seeds_run / "results/tiny"
    (a, ma), (b, mb) = (load_model(base / f"seed{s}/round0/model.pt") for s in (1, 2))
    assert ma["params"]["seed"] == 1 and mb["params"]["seed"] == 2
    assert any((a.state_dict()[k] != b.state_dict()[k]).any() for k in a.state_dict() if k.endswith("weight"))
    assert not list(base.glob("seed*/faces.h5")) and (base / "faces.h5").exists()


def test_changing_one_seed_reruns_only_that_seeds_jobs(seeds_run):
    changed = {**SEEDS, "seeds": [1, 3]}
    write_config(seeds_run, changed)
    try:
        proc = run_snakemake(seeds_run, "-n", "--cores", "2", "results/tiny/comparison.md")
    finally:
        write_config(seeds_run, SEEDS)
    out = proc.stdout + proc.stderr
    assert job_counts(out) == {**PER_SEED, "comparison": 1}
    outputs = re.findall(r"^\s+output: (.*)$", out, re.M)
    for line in outputs:
        for path in line.split(", "):
            assert path.startswith(("results/tiny/seed3/", "results/tiny/comparison.")), path
    proc = run_snakemake(seeds_run, "-n", "--cores", "2", "results/tiny/comparison.md")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_robustness_of_two_seeds(seeds_run):
    """results/tiny/robustness.* from a real run: every method and seed, the clean rows equal to the
    comparison's, the corrupted copies of both evaluation splits, both attacks; a rerun does nothing."""
    run_snakemake(seeds_run, "--cores", "2", "results/tiny/robustness.md")
    base = seeds_run / "results/tiny"
    for seed in (1, 2):
        for sub in ("round0", "round1", "ablation/random_erasing"):
            folder = base / f"seed{seed}/{sub}/robustness"
            assert sorted(p.name for p in folder.iterdir()) == [
                "attack_de.h5",
                "attack_ranked.h5",
                "corruptions.h5",
            ]
    rows = list(csv.DictReader((base / "robustness.csv").open()))
    comparison = {(r["set"], r["method"]): r for r in csv.DictReader((base / "comparison.csv").open())}
    clean = [r for r in rows if r["kind"] == "clean"]
    assert len(clean) == len(comparison) == 9
    for r in clean:
        c = comparison[(r["set"].removeprefix("clean "), r["method"])]
        assert all(r[k] == v for k, v in c.items() if k != "set"), r["set"]
    copies = ["occlusion/eyes/grey", "occlusion/eyes/noise", "occlusion/lower/grey", "occlusion/lower/noise"]
    copies += ["patch/25", "gaussian_noise/1", "gaussian_noise/3", "jpeg/1", "jpeg/3"]
    corrupted = [r["set"] for r in rows if r["kind"] == "corruption" and r["method"] == "round1"]
    assert corrupted == [f"{split}/{c}" for split in ("test", "occlusion") for c in copies]
    attacks = {(r["set"], r["method"]): r for r in rows if r["kind"] == "attack"}
    assert set(attacks) == {
        (f"attack {a}", m) for a in ("ranked", "de") for m in ("round0", "round1", "random_erasing")
    }
    for r in attacks.values():
        assert r["n"] == "10" and r["seeds"] == "2" and 0 <= float(r["attack_success_mean"]) <= 1
    md = (base / "robustness.md").read_text()
    assert "seeds [1, 2]" in md and "## attack de (10 faces" in md and "Cost: this evaluation took" in md
    assert (base / "robustness.png").stat().st_size > 5000 and (
        base / "robustness_examples.png"
    ).stat().st_size > 5000
    proc = run_snakemake(seeds_run, "-n", "--cores", "2", "results/tiny/robustness.md")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_a_killed_attack_continues_at_its_first_unfinished_block(seeds_run, tmp_path, caplog):
    """The attack keeps its finished blocks as a search shard does: a rerun with a state of one block
    searches only the rest (a marker planted in the state's block survives) and writes the same table."""
    import logging

    import numpy as np

    from pasm.data.h5store import read_faces, read_table
    from pasm.workflow.robustness import attack_rows, robustness_attack
    from pasm.workflow.shard_state import shard_state

    base = seeds_run / "results/tiny"
    search = {**SEEDS["robustness"]["attacks"]["de"], "block": 4}
    args = dict(
        faces=str(base / "faces.h5"),
        model=str(base / "seed1/round0/model.pt"),
        attack_name="de",
        split="test",
        n_faces=10,
        search=search,
        seed=0,
        progress=False,
    )
    whole = tmp_path / "whole.h5"
    robustness_attack(attack=str(whole), **args)
    table, _ = read_table(whole)
    resumed = tmp_path / "resumed.h5"
    settings = dict(search=search, block=4, split="test", n_faces=10, seed=0, device_type="cpu")
    state = shard_state(resumed, [args["faces"], args["model"]], settings, stage="robustness_attack")
    first = {k: v[:4].copy() for k, v in table.items() if k != "labels"}
    first["prob_after"][:] = 0.123  # a marker: a block searched again would not keep it
    state.save(first, 1, 4, 1.0)
    with caplog.at_level(logging.INFO, logger="pasm.workflow"):
        robustness_attack(attack=str(resumed), **args)
    again, _ = read_table(resumed)
    assert "resuming attack de at block 1 of 3 (4 faces done)" in caplog.text
    rows = attack_rows(read_faces(args["faces"], with_images=False), "test", 10, 0)
    assert np.array_equal(again["index"], rows) and (again["prob_after"][:4] == 0.123).all()
    for key in table:
        if key != "prob_after":
            assert np.array_equal(again[key], table[key]), key
    assert np.array_equal(again["prob_after"][4:], table["prob_after"][4:])
    assert not state.path.exists()
