"""profiles/gpu on a machine with two (fake) GPUs: every network rule is given one, concurrent
pretrain, search and finetune jobs hold distinct GPUs, and a job the profile gives a GPU that does
not exist stops with one line instead of running on the CPU."""

from __future__ import annotations

import copy
import itertools
import re
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_snakemake, write_config
from test_workflow import TINY

pytestmark = pytest.mark.workflow  # runs Snakemake: make test-fast leaves it out

PROFILE = str(REPO / "profiles" / "gpu")
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ")
PLACED = re.compile(r"placed: device cpu, GPU (\S+) \(fake GPU")


def config(tmp_path: Path, **extra) -> dict:
    cfg = copy.deepcopy(TINY)
    cfg.update(
        device="auto",
        seeds=[1, 2],
        gpu_lock_dir=str(tmp_path / "locks"),
        **extra,
    )
    cfg["method"].update(rounds=1, shards=2, ablation={"variants": [], "mask_sizes": [], "betas": []})
    return cfg


def network_rules() -> set[str]:
    """Rules whose params include the device: the ones that run a network."""
    rules, current = set(), None
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        for line in path.read_text().splitlines():
            if line.startswith("rule "):
                current = line.split()[1].rstrip(":")
            elif line.strip().startswith("device=") and current:
                rules.add(current)
    return rules


@pytest.mark.parametrize("profile", ["gpu", "slurm"])
def test_every_network_rule_gets_a_gpu_from_the_profile(profile):
    doc = yaml.safe_load((REPO / "profiles" / profile / "config.yaml").read_text())
    given = {rule for rule, res in doc["set-resources"].items() if int(res.get("gpu", 0)) == 1}
    rules = network_rules()
    assert {"faces", "pretrain", "finetune", "search_points", "evaluate"} <= rules
    assert given == rules


def gpu_jobs(logs: Path) -> list[tuple[str, str, datetime, datetime]]:
    """(log, GPU, from the claim to the last line) of every job that held a GPU."""
    jobs = []
    for log in sorted(logs.rglob("*.log")):
        lines = log.read_text().splitlines()
        placed = [(i, m.group(1)) for i, line in enumerate(lines) if (m := PLACED.search(line))]
        if not placed:
            continue
        times = [datetime.fromisoformat(m.group(1)) for line in lines if (m := STAMP.match(line))]
        start = datetime.fromisoformat(STAMP.match(lines[placed[0][0]]).group(1))
        jobs.append((str(log.relative_to(logs)), placed[0][1], start, times[-1]))
    return jobs


def test_concurrent_jobs_hold_distinct_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("PASM_FAKE_GPUS", "2")
    write_config(tmp_path, config(tmp_path))
    run_snakemake(
        tmp_path,
        "results/tiny/seed1/round1/metrics.json",
        "results/tiny/seed2/round1/metrics.json",
        "--workflow-profile",
        PROFILE,
        "--cores",
        "4",
        "--resources",
        "gpu=2",
    )
    jobs = gpu_jobs(tmp_path / "results" / "tiny")
    kinds = {re.sub(r"_\d+-of-\d+", "", Path(name).stem) for name, *_ in jobs}
    assert {"faces", "pretrain", "search", "finetune", "evaluate"} <= kinds, jobs
    assert {gpu for _, gpu, _, _ in jobs} == {"0", "1"}
    overlapping = [(a, b) for a, b in itertools.combinations(jobs, 2) if a[2] < b[3] and b[2] < a[3]]
    assert overlapping, "no two GPU jobs ran at once"
    for a, b in overlapping:
        assert a[1] != b[1], f"{a[0]} and {b[0]} held GPU {a[1]} at the same time"
    from pasm.nn.models import load_model

    _, meta = load_model(tmp_path / "results/tiny/seed1/round1/model.pt")
    assert meta["placement"]["gpu"] in ("0", "1")


@pytest.mark.parametrize(
    "fake, extra, message",
    [
        ("0", {}, "rule faces: the profile gives it a GPU, but this machine has none"),
        ("2", {"gpus": 3}, "rule faces: config gpus is 3, but this machine has 2 GPU(s)"),
    ],
)
def test_no_usable_gpu_stops_the_job_with_one_line(tmp_path, monkeypatch, fake, extra, message):
    monkeypatch.setenv("PASM_FAKE_GPUS", fake)
    monkeypatch.setenv("PATH", str(Path(__import__("sys").executable).parent) + ":/usr/bin:/bin")
    write_config(tmp_path, config(tmp_path, **extra))
    proc = run_snakemake(
        tmp_path, "--workflow-profile", PROFILE, "--cores", "2", "results/tiny/faces.h5", check=False
    )
    assert proc.returncode != 0
    log = (tmp_path / "results/tiny/logs/faces.log").read_text()
    assert message in log and "Traceback" not in log, log
    assert message in proc.stderr
    assert not (tmp_path / "results/tiny/faces.h5").exists()
