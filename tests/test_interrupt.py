"""Runs that survive being killed: a real Snakemake run is SIGKILLed (with its job processes)
during the point search and during fine-tuning, restarted the way docs/operations.md says, and must
redo only the unfinished work and end with the artifacts of an uninterrupted run."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import REPO, run_snakemake, write_config

pytestmark = pytest.mark.workflow  # runs Snakemake or the whole pipeline: make test-fast leaves it out

# Like test_workflow.TINY, sized so that each of the 4 search shards and each of the 4
# fine-tuning epochs takes long enough to be killed in the middle of.
KILL = {
    "seed": 3,
    "device": "cpu",
    "threads": 1,
    "datasets": {
        "tiny": {
            "format": "demo",
            "root": "data/tiny",
            "image_size": 32,
            "eval_splits": ["test"],
            "demo": {"per_class": {"train": 12, "val": 2, "test": 3, "occlusion": 1}},
            "model": {"arch": "compact", "width": 8},
            "pretrain": {"epochs": 2, "batch_size": 16, "lr": 0.05, "lr_milestones": [2], "crop_pad": 2},
            "finetune": {"epochs": 4, "batch_size": 2, "lr": 0.01, "lr_milestones": [3], "crop_pad": 2},
        }
    },
    "method": {"rounds": 1, "mask_size": 5, "shards": 4, "search": {"population": 20, "generations": 6}},
}
TARGET = "results/tiny/round1/metrics.json"
R1 = "results/tiny/round1"
SHARDS = [f"{R1}/points/{i}-of-4.h5" for i in range(1, 5)]
STATE = f"{R1}/model.train_state.pt"
POLL_S = 0.02


def _start(wd: Path, out: Path) -> subprocess.Popen:
    """The run to be killed: its own session, so that killpg reaches every job process too."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "workflow" / "Snakefile"),
        "-d",
        str(wd),
        "--cores",
        "1",
        TARGET,
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    return subprocess.Popen(
        cmd, stdout=out.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True
    )


def _kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _wait_for(proc: subprocess.Popen, out: Path, condition, timeout: float = 300):
    """Poll until condition() returns something true; fail if the run ends or time runs out first."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        got = condition()
        if got:
            return got
        if proc.poll() is not None:
            pytest.fail(
                f"the run ended (rc {proc.returncode}) before the kill point:\n{out.read_text()[-3000:]}"
            )
        time.sleep(POLL_S)
    _kill(proc)
    pytest.fail(f"no kill point within {timeout} s:\n{out.read_text()[-3000:]}")


def _restart(wd: Path) -> str:
    """docs/operations.md's restart after a hard kill: release the stale lock, rerun with
    --rerun-incomplete."""
    run_snakemake(wd, "--unlock", "--cores", "1", TARGET)
    proc = run_snakemake(wd, "--cores", "1", TARGET, "--rerun-incomplete")
    return proc.stdout + proc.stderr


def _marked_incomplete(wd: Path) -> set[str]:
    """Outputs Snakemake has marked as being written (its .snakemake/incomplete records)."""
    root = wd / ".snakemake" / "incomplete"
    found = set()
    for p in root.rglob("*") if root.is_dir() else []:
        if p.is_file() and p.name != "migration_underway":
            b64 = "".join(part.lstrip("@") for part in p.relative_to(root).parts)
            found.add(base64.urlsafe_b64decode(b64).decode())
    return found


def _jobs(log: str) -> list[tuple[str, str]]:
    """(rule, output) of every job a Snakemake run started, from its console log."""
    jobs, rule = [], None
    for line in log.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            rule = m.group(1)
        elif rule and (m := re.match(r"^\s+output: (.*)$", line)):
            jobs.append((rule, m.group(1)))
            rule = None
    return jobs


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _h5(path: Path) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}, {k: json.loads(v) for k, v in f.attrs.items()}


def _same_h5(a: Path, b: Path, timing_attrs: tuple[str, ...] = ()) -> None:
    """Same datasets, bit for bit, and same attributes except measured times."""
    (da, aa), (db, ab) = _h5(a), _h5(b)
    assert sorted(da) == sorted(db)
    for k in da:
        assert da[k].dtype == db[k].dtype and np.array_equal(da[k], db[k]), f"{a}: dataset {k} differs"
    for k in timing_attrs:
        aa.pop(k, None), ab.pop(k, None)
    assert aa == ab


def _same_model(a: Path, b: Path) -> None:
    """Same weights and buffers (torch.equal per tensor) and same metadata except epoch timings."""
    ma, mb = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
    assert ma["state_dict"].keys() == mb["state_dict"].keys()
    for k, t in ma["state_dict"].items():
        assert torch.equal(t, mb["state_dict"][k]), f"{a}: tensor {k} differs"
    strip = lambda meta: {**meta, "history": [_no_timing(h) for h in meta.get("history", [])]}  # noqa: E731
    assert strip(ma["meta"]) == strip(mb["meta"])


def _no_timing(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("seconds", "images_per_s")}


def _same_metrics(a: Path, b: Path) -> None:
    """Same metrics; the model's SHA-256 differs only because model.pt records epoch timings."""
    ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
    ja.pop("model_sha256"), jb.pop("model_sha256")
    assert ja == jb


def _train_log(path: Path) -> list[dict[str, str]]:
    lines = path.read_text().splitlines()
    head = lines[0].split(",")
    return [dict(zip(head, line.split(","))) for line in lines[1:]]


def _leftovers(wd: Path) -> list[str]:
    """Temporary files of atomic writes and training logs still under results/."""
    res = wd / "results"
    return sorted(str(p.relative_to(wd)) for p in res.rglob("*") if p.name.endswith((".tmp", ".part")))


def _bit_identical(wd: Path, ref: Path, paths: list[str]) -> dict[str, bool]:
    return {p: _sha(wd / p) == _sha(ref / p) for p in paths}


FINAL = [f"{R1}/points.h5", f"{R1}/masked.h5", f"{R1}/model.pt", f"{R1}/train_log.csv", TARGET]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run of the same config: what every killed and restarted run must end with."""
    wd = tmp_path_factory.mktemp("reference")
    write_config(wd, KILL)
    run_snakemake(wd, "--cores", "2", TARGET)
    return wd


def _same_final_artifacts(wd: Path, ref: Path) -> dict[str, bool]:
    for shard in SHARDS:
        _same_h5(wd / shard, ref / shard, timing_attrs=("seconds",))
    _same_h5(wd / f"{R1}/points.h5", ref / f"{R1}/points.h5", timing_attrs=("search_seconds",))
    _same_h5(wd / f"{R1}/masked.h5", ref / f"{R1}/masked.h5")
    _same_model(wd / f"{R1}/model.pt", ref / f"{R1}/model.pt")
    _same_metrics(wd / TARGET, ref / TARGET)
    assert [_no_timing(r) for r in _train_log(wd / f"{R1}/train_log.csv")] == [
        _no_timing(r) for r in _train_log(ref / f"{R1}/train_log.csv")
    ]
    return _bit_identical(wd, ref, FINAL)


def _copy_without(reference: Path, tmp_path: Path, names: list[str]) -> Path:
    """The reference run's directory (mtimes and Snakemake's records kept) less some round-1 artifacts."""
    wd = tmp_path / "run"
    shutil.copytree(reference, wd, symlinks=True)
    for name in names:
        path = wd / R1 / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return wd


def test_killed_during_the_search_redoes_only_unfinished_shards(reference, tmp_path):
    # round 0 as in the reference (saves the time of building it again); round 1 from its search on
    wd = _copy_without(
        reference,
        tmp_path,
        [
            "points",
            "points.h5",
            "masked.h5",
            "masked_examples.png",
            "model.pt",
            "train_log.csv",
            "metrics.json",
            "confusion.png",
        ],
    )
    out = tmp_path / "killed_run.log"
    proc = _start(wd, out)

    def in_the_middle_of_a_shard():
        done = [s for s in SHARDS if (wd / s).exists()]
        registered = [s for s in done if s not in _marked_incomplete(wd)]
        running = [s for s in SHARDS if s in _marked_incomplete(wd) and not (wd / s).exists()]
        if registered and running and len(done) < len(SHARDS):
            return running
        return None

    _wait_for(proc, out, in_the_middle_of_a_shard)
    time.sleep(0.5)  # into that shard's search
    incomplete = _marked_incomplete(wd)  # taken before the kill: outputs Snakemake had not yet recorded
    before = {
        s: ((wd / s).stat().st_ino, (wd / s).stat().st_mtime_ns, _sha(wd / s))
        for s in SHARDS
        if (wd / s).exists()
    }
    _kill(proc)
    assert 0 < len(before) < len(SHARDS), before
    assert not (wd / f"{R1}/points.h5").exists()
    for shard in before:  # every file under its final name is complete
        _same_h5(wd / shard, reference / shard, timing_attrs=("seconds",))
    left_at_kill = _leftovers(wd)

    log = _restart(wd)
    searched = {out_ for rule, out_ in _jobs(log) if rule == "search_points"}
    missing = set(SHARDS) - set(before)
    assert missing <= searched <= missing | (incomplete & set(before)), (searched, missing, incomplete)
    kept = set(SHARDS) - searched
    assert kept, "no finished shard survived the kill"
    for shard in kept:  # the same file, never rewritten
        st = (wd / shard).stat()
        assert (st.st_ino, st.st_mtime_ns, _sha(wd / shard)) == before[shard]
    assert sorted(rule for rule, _ in _jobs(log)) == sorted(
        ["search_points"] * len(searched)
        + ["gather_points", "masked_samples", "point_density", "finetune", "evaluate"]
    )
    assert _leftovers(wd) == []
    identical = _same_final_artifacts(wd, reference)
    print(
        f"\nsearch kill: {len(before)} of {len(SHARDS)} shards done at the kill, restart searched "
        f"{len(searched)} ({sorted(Path(s).name for s in searched)}), kept {len(kept)}; "
        f"temporary files at the "
        f"kill: {left_at_kill}; bit-identical to the uninterrupted run: {identical}"
    )


def test_killed_during_finetuning_continues_after_the_last_saved_epoch(reference, tmp_path):
    wd = _copy_without(reference, tmp_path, ["model.pt", "train_log.csv", "metrics.json", "confusion.png"])
    out = tmp_path / "killed_run.log"
    proc = _start(wd, out)

    def state_saved():
        try:
            return torch.load(wd / STATE, map_location="cpu", weights_only=False)["epoch"]
        except FileNotFoundError:
            return None

    _wait_for(proc, out, state_saved)
    _kill(proc)
    k = torch.load(wd / STATE, map_location="cpu", weights_only=False)["epoch"]  # what the restart finds
    assert 1 <= k < 4 and not (wd / f"{R1}/model.pt").exists()
    killed_epochs = re.findall(
        r"epoch (\d)/4 loss", (wd / "results/tiny/logs/round1/finetune.log").read_text()
    )

    log = _restart(wd)
    redone = sorted(rule for rule, _ in _jobs(log))
    # point_density needs only points.h5, so it may have run before the kill or after it
    assert [r for r in redone if r != "point_density"] == ["evaluate", "finetune"] and redone.count(
        "point_density"
    ) <= 1
    flog = (wd / "results/tiny/logs/round1/finetune.log").read_text()
    assert re.search(
        rf"resuming from \S+model\.train_state\.pt: epochs 1-{k} done, continuing at epoch {k + 1}", flog
    )
    trained = [int(e) for e in re.findall(r"epoch (\d)/4 loss", flog)]
    assert trained == list(range(k + 1, 5))  # epochs 1..k were not trained again
    epochs = [int(r["epoch"]) for r in _train_log(wd / f"{R1}/train_log.csv")]
    assert epochs == [1, 2, 3, 4]
    assert not (wd / STATE).exists()
    assert _leftovers(wd) == []
    identical = _same_final_artifacts(wd, reference)
    print(
        f"\nfinetune kill: epochs finished before the kill {killed_epochs}, "
        f"saved state at epoch {k}, restart "
        f"trained epochs {trained}; bit-identical to the uninterrupted run: {identical}"
    )
