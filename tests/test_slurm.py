"""The SLURM profile on a real Slurm cluster: the tiny demo through round 1, every job submitted
with sbatch by snakemake-executor-plugin-slurm, and the artifacts compared with a local run.

Needs a working Slurm (`sinfo` answers); CI starts a one-node cluster with .ci/slurm-up.sh.
Without one the tests skip, unless PASM_REQUIRE_SLURM=1 (set by .ci/run), where they fail.

The cluster run uses profiles/slurm/config.yaml as it is, except for what a throwaway one-node
cluster cannot honour (see `make_test_profile`): no account (no accounting database, so sacctmgr
cannot validate one), the cluster's own partition, memory requests scaled to the node, `squeue`
for job status (`sacct` needs slurmdbd), a short first status check, and kept Slurm logs. The
GPU requests stay when the cluster has `gpu` GRES (.ci/slurm-up.sh's are count-only: the jobs
are scheduled on GPUs but run the tiny config on CPU); without GRES they are dropped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, run_snakemake, write_config
from test_workflow import TINY

from pasm.data.h5store import read_faces, read_table
from pasm.workflow.placement import FAKE_GPUS

pytestmark = pytest.mark.workflow  # runs Snakemake or the whole pipeline: make test-fast leaves it out

TARGET = "results/tiny/round1/metrics.json"
# The jobs behind TARGET, by rule (TINY has 2 search shards; evaluating round 1 evaluates round 0).
EXPECTED_JOBS = {
    "demo_images": 1,
    "faces": 1,
    "pretrain": 1,
    "search_points": 2,
    "gather_points": 1,
    "masked_samples": 1,
    "point_density": 1,
    "finetune": 1,
    "evaluate": 2,
}
# of EXPECTED_JOBS, those the profile gives a GPU (every rule that runs a network)
GPU_RULES = {"faces", "pretrain", "search_points", "finetune", "evaluate"}
SMALL = {**TINY, "method": {**TINY["method"], "rounds": 1}}


def slurm_problem() -> str | None:
    """Why this machine cannot run Slurm jobs, or None when `sinfo` shows a usable node."""
    if shutil.which("sinfo") is None:
        return "no Slurm here (sinfo not found); .ci/slurm-up.sh starts a one-node cluster"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo did not answer: {exc}"
    if proc.returncode != 0:
        return f"sinfo failed ({proc.returncode}): {proc.stderr.strip()}"
    states = set(proc.stdout.split())
    if not states & {"idle", "mixed", "allocated", "completing"}:
        return f"no usable Slurm node (states: {sorted(states) or 'none'})"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def cluster():
    problem = slurm_problem()
    if problem:
        if os.environ.get("PASM_REQUIRE_SLURM") == "1":
            pytest.fail(f"PASM_REQUIRE_SLURM=1 but {problem}", pytrace=False)
        pytest.skip(problem)
    partitions = subprocess.run(
        ["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, check=True
    ).stdout.split()
    default = next((p.rstrip("*") for p in partitions if p.endswith("*")), partitions[0].rstrip("*"))
    gres = subprocess.run(
        ["sinfo", "-h", "-p", default, "-o", "%G"], capture_output=True, text=True, check=True
    ).stdout
    return {"partition": default, "gpus": "gpu" in gres}


def test_slurm_profile_asks_for_what_a_real_cluster_needs():
    """Checked without a cluster: GPUs for the network rules only, runtimes growing with attempt, requeue."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["slurm-requeue"] is True and profile["jobs"] >= 1
    assert profile["retries"] >= 1
    defaults, per_rule = profile["default-resources"], profile["set-resources"]
    assert {"slurm_account", "slurm_partition"} <= set(defaults)
    for rule in (
        "search_points",
        "ablation_seeded_points",
        "pretrain",
        "finetune",
        "ablation_train",
        "ablation_pretrain_cross",
        "ablation_evaluate",
        "faces",
        "evaluate",
        "cross_evaluate",
    ):
        assert per_rule[rule]["gpu"] == 1 and per_rule[rule]["cpus_per_gpu"] == "threads", rule
        assert {"mem_mb", "runtime"} <= set(per_rule[rule]), rule
    for rule in ("demo_images", "gather_points", "masked_samples", "point_density", "ablation_masked"):
        assert "gpu" not in per_rule.get(rule, {}), rule
    for res in [defaults, *per_rule.values()]:
        assert "attempt" in str(res.get("runtime", "attempt"))
    rules = set(
        re.findall(
            r"^\s*(?:rule|checkpoint) (\w+):",
            "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk")),
            re.M,
        )
    )
    assert set(per_rule) <= rules, set(per_rule) - rules  # no typo in a rule name


def make_test_profile(cluster, tmp_path_factory) -> Path:
    """profiles/slurm/config.yaml with the overrides a one-node test cluster needs (and only those)."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    defaults = profile["default-resources"]
    del defaults["slurm_account"]  # no slurmdbd: sacctmgr cannot validate any account
    defaults["slurm_partition"] = cluster["partition"]
    defaults["mem_mb"] = "1000*attempt"  # the real requests (up to 32 GB) exceed a small CI node
    for res in profile["set-resources"].values():
        if "mem_mb" in res:
            res["mem_mb"] = "1000*attempt"
        if not cluster["gpus"]:
            res.pop("gpu", None)
            res.pop("cpus_per_gpu", None)
    profile["slurm-status-command"] = "squeue"  # sacct needs accounting (slurm-up.sh: MinJobAge 1 h)
    profile["slurm-init-seconds-before-status-checks"] = 2  # tiny jobs: look soon
    profile["slurm-keep-successful-logs"] = True  # the test reads them
    out = tmp_path_factory.mktemp("slurm_profile")
    (out / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return out


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """The same config through TARGET, once with the (test) SLURM profile and once locally."""
    profile = make_test_profile(cluster, tmp_path_factory)
    slurm_wd, local_wd = tmp_path_factory.mktemp("slurm_run"), tmp_path_factory.mktemp("local_run")
    # The test cluster's GPUs are count-only (no CUDA behind them): its GPU jobs claim them as
    # the tests' fake GPUs and run on the CPU, like the local run. A job given a GPU refuses
    # `device: cpu`, so the cluster run's config says auto.
    fake = {FAKE_GPUS: "1"} if cluster["gpus"] else {}
    write_config(slurm_wd, {**SMALL, "device": "auto"} if fake else SMALL)
    write_config(local_wd, SMALL)
    # side by side: the cluster run spends much of its time waiting for Slurm and status checks
    with ThreadPoolExecutor(2) as pool:
        cluster_run = pool.submit(
            run_snakemake, slurm_wd, "--workflow-profile", str(profile), TARGET, timeout=600, env=fake
        )
        local_run = pool.submit(run_snakemake, local_wd, "--cores", "2", TARGET)
        proc = cluster_run.result()
        local_run.result()
    return slurm_wd, local_wd, proc.stdout + proc.stderr


def scontrol_job(job_id: str) -> dict[str, str]:
    """`scontrol show job -d -o` as key=value pairs (values without spaces are enough here)."""
    out = subprocess.run(
        ["scontrol", "show", "job", "-d", "-o", job_id], capture_output=True, text=True, check=True
    ).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def test_every_job_went_through_slurm(runs, cluster):
    slurm_wd, _, log = runs
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", log)
    jobs = {}
    for job_id, slurm_log in submitted:
        info = scontrol_job(job_id)
        rule = re.match(r"rule_(\w+?)(_wildcards_.*)?$", info["Comment"]).group(1)
        jobs.setdefault(rule, []).append(job_id)
        assert info["JobState"] == "COMPLETED", (job_id, info["JobState"])
        assert info["Partition"] == cluster["partition"]
        assert Path(slurm_log).is_file() and Path(slurm_log).name == f"{job_id}.log"
        asked_gpu = info.get("JOB_GRES", "(null)") not in ("(null)", "")
        print(
            f"slurm job {job_id}: {rule} {info['JobState']} partition={info['Partition']} "
            f"JOB_GRES={info.get('JOB_GRES')} {info.get('TRES')} log={slurm_log}"
        )
        assert asked_gpu == (cluster["gpus"] and rule in GPU_RULES), (rule, info.get("JOB_GRES"))
    assert {rule: len(ids) for rule, ids in jobs.items()} == EXPECTED_JOBS
    print("SLURM jobs by rule:", jobs)
    assert (slurm_wd / TARGET).is_file()
    # nothing ran locally: a rerun has nothing to do
    proc = run_snakemake(slurm_wd, "-n", "--workflow-profile", "none", "--cores", "1", TARGET)
    assert "Nothing to be done" in proc.stdout + proc.stderr


TIMINGS = {"seconds", "images_per_s", "search_seconds"}  # wall-clock measurements
HASHES = {"model_sha256", "teacher_sha256"}  # of model files, which hold the training's timings
WHERE = {"placement", "gpu"}  # the GPU a job held: the cluster's, none locally


def without(d: dict, keys: set[str]) -> dict:
    """`d` without `keys`, also inside nested lists and dicts."""

    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k not in keys}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    return strip(d)


def test_cluster_artifacts_equal_local_ones(runs):
    """Bit-identical on CPU (same seed, one torch thread per job): images, points, masks, weights,
    losses and metrics. Only wall-clock timings differ, and so the hashes of the files holding them."""
    slurm_wd, local_wd, _ = runs
    a, b = slurm_wd / "results/tiny", local_wd / "results/tiny"
    assert np.array_equal(read_faces(a / "faces.h5").images, read_faces(b / "faces.h5").images)
    for name in (
        "round1/points.h5",
        "round1/points/1-of-2.h5",
        "round1/points/2-of-2.h5",
        "round1/masked.h5",
    ):
        (ta, attrs_a), (tb, attrs_b) = read_table(a / name), read_table(b / name)
        assert ta.keys() == tb.keys()
        for key in ta:
            assert np.array_equal(ta[key], tb[key]), f"{name}:{key} differs"
        assert without(attrs_a, TIMINGS | HASHES | WHERE) == without(attrs_b, TIMINGS | HASHES | WHERE), name
    for rnd in (0, 1):
        ma = torch.load(a / f"round{rnd}/model.pt", map_location="cpu", weights_only=True)
        mb = torch.load(b / f"round{rnd}/model.pt", map_location="cpu", weights_only=True)
        assert ma["state_dict"].keys() == mb["state_dict"].keys()
        for key in ma["state_dict"]:
            assert torch.equal(ma["state_dict"][key], mb["state_dict"][key]), (
                f"round{rnd} weight {key} differs"
            )
        assert without(ma["meta"], TIMINGS | HASHES | WHERE) == without(mb["meta"], TIMINGS | HASHES | WHERE)
        assert ma["meta"]["history"] and ma["meta"]["history"][0]["loss"] == mb["meta"]["history"][0]["loss"]
        metrics_a = json.loads((a / f"round{rnd}/metrics.json").read_text())
        metrics_b = json.loads((b / f"round{rnd}/metrics.json").read_text())
        assert without(metrics_a, HASHES | WHERE) == without(metrics_b, HASHES | WHERE)
