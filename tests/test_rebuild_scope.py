"""Inputs that change after a run rebuild what depends on them and nothing else: one config key
per stage family (and a changed data file) against a finished tiny run, checked with dry runs.
Each rule names the config values it reads as params, so the scope follows from them."""

from __future__ import annotations

import copy
import os
import time

import pytest
import yaml
from conftest import run_snakemake, write_config
from test_workflow import TINY, job_counts

pytestmark = pytest.mark.workflow  # runs Snakemake or the whole pipeline: make test-fast leaves it out

TARGET = "results/tiny/round2/metrics.json"  # rounds 0-2
SCOPE = {**TINY, "method": {**TINY["method"], "shards": 1}}  # one search job per round: fewer jobs to run

# Everything of the data set from that stage on, for the target (rounds 0-2).
FROM_FACES = {
    "faces": 1,
    "pretrain": 1,
    "search_points": 2,
    "gather_points": 2,
    "masked_samples": 2,
    "finetune": 2,
    "evaluate": 3,
}
FROM_PRETRAIN = {k: v for k, v in FROM_FACES.items() if k != "faces"}
ROUND2_FROM_SEARCH = {
    "search_points": 1,
    "gather_points": 1,
    "masked_samples": 1,
    "finetune": 1,
    "evaluate": 1,
}


def _plus(*counts):
    total = {}
    for c in counts:
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    return total


CASES = {
    # faces' params: the reader's settings (and device) -> faces.h5 and everything after it
    "datasets.tiny.align.scale": (("datasets", "tiny", "align", "scale"), 1.1, FROM_FACES),
    # pretrain's params: training keys of round 0 (and seed) -> pretrain and every round
    "datasets.tiny.pretrain.lr": (("datasets", "tiny", "pretrain", "lr"), 0.04, FROM_PRETRAIN),
    "datasets.tiny.model.width": (("datasets", "tiny", "model", "width"), 5, FROM_PRETRAIN),
    # search_points' params: the point search of rounds >= 1 and what is built from its points
    "method.search.population": (
        ("method", "search", "population"),
        7,
        {"search_points": 2, "gather_points": 2, "masked_samples": 2, "finetune": 2, "evaluate": 2},
    ),
    # masked_samples' params: the masks of rounds >= 1 (round 2's search follows round 1's new model)
    "method.mask_size": (
        ("method", "mask_size"),
        7,
        _plus({"masked_samples": 1, "finetune": 1, "evaluate": 1}, ROUND2_FROM_SEARCH),
    ),
    # finetune's params: fine-tuning of rounds >= 1, not round 1's points, not round 0
    "datasets.tiny.finetune.lr": (
        ("datasets", "tiny", "finetune", "lr"),
        0.02,
        _plus({"finetune": 1, "evaluate": 1}, ROUND2_FROM_SEARCH),
    ),
    "method.beta": (("method", "beta"), 0.5, _plus({"finetune": 1, "evaluate": 1}, ROUND2_FROM_SEARCH)),
    # evaluate's own params: only the evaluations (they reran faces and everything before params were named)
    "datasets.tiny.eval_splits": (("datasets", "tiny", "eval_splits"), ["test"], {"evaluate": 3}),
    # threads and the machine's GPUs are threads/resources, not params: nothing reruns (they reran every
    # round)
    "threads": (("threads",), 2, {}),
    "method.search.threads": (("method", "search", "threads"), 2, {}),
    "gpu_lock_dir": (("gpu_lock_dir",), "/tmp/elsewhere", {}),
    # keys that only choose targets or configure ablations -> nothing of the built rounds
    "method.rounds": (("method", "rounds"), 3, {}),
    "method.max_rounds": (("method", "max_rounds"), 4, {}),
    "method.ablation.betas": (("method", "ablation", "betas"), [0.2], {}),
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    wd = tmp_path_factory.mktemp("scope")
    write_config(wd, SCOPE)
    run_snakemake(wd, "--cores", "2", TARGET)
    return wd


def _with_density(expected):
    """point_density redraws a round's points picture whenever its points.h5 is rebuilt."""
    if expected.get("gather_points"):
        return {**expected, "point_density": expected["gather_points"]}
    return expected


def _dry_run(wd, *args):
    proc = run_snakemake(wd, "-n", "--cores", "2", TARGET, *args)
    out = proc.stdout + proc.stderr
    return {} if "Nothing to be done" in out else job_counts(out)


@pytest.mark.parametrize("name", list(CASES))
def test_a_changed_key_reruns_its_stage_and_what_follows(finished, name):
    keys, value, expected = CASES[name]
    cfg = copy.deepcopy(SCOPE)
    node = cfg
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
    (finished / "changed.yaml").write_text(yaml.safe_dump(cfg))
    assert _dry_run(finished, "--configfile", str(finished / "changed.yaml")) == _with_density(expected)


def test_a_changed_data_file_reruns_faces_and_everything_after(finished):
    assert _dry_run(finished) == {}
    manifest = finished / "data/tiny/manifest.csv"
    st, original = manifest.stat(), manifest.read_bytes()
    try:
        os.utime(manifest, ns=(st.st_atime_ns, time.time_ns()))  # newer, same content: Snakemake compares
        assert _dry_run(finished) == {}  # the checksum it recorded for this input file, so nothing reruns
        manifest.write_bytes(original.replace(b",train,", b",train ,", 1))  # a changed data file
        assert _dry_run(finished) == _with_density(FROM_FACES)
    finally:
        manifest.write_bytes(original)
        os.utime(manifest, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _dry_run(finished) == {}


def test_a_new_cross_eval_target_adds_its_jobs_and_reruns_only_evaluation(finished):
    cfg = copy.deepcopy(SCOPE)
    cfg["datasets"]["other"] = {**copy.deepcopy(SCOPE["datasets"]["tiny"]), "root": "data/other"}
    cfg["datasets"]["tiny"]["cross_eval"] = ["other"]
    (finished / "changed.yaml").write_text(yaml.safe_dump(cfg))
    assert _dry_run(finished, "--configfile", str(finished / "changed.yaml")) == {
        "demo_images": 1,
        "faces": 1,
        "cross_evaluate": 3,
        "evaluate": 3,
    }  # other's faces.h5, tiny's evaluations
