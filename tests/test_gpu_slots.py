"""Tests of GPU slot claiming with lock files (pasm.workflow.gpu_slots), on fake slots: no GPU needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pasm.workflow.gpu_slots import claim_gpu, lock_path, physical_gpu_count, visible_devices_env

REPO = Path(__file__).resolve().parents[1]

# A separate process that claims a slot, reports it on stdout, then sleeps until killed.
HOLDER = """
import sys, time
from pasm.workflow.gpu_slots import claim_gpu
with claim_gpu(2, sys.argv[1], env={}, timeout=0) as i:
    print(i, flush=True)
    time.sleep(120)
"""


def start_holder(lock_dir: Path) -> tuple[subprocess.Popen, int]:
    """Start a holder process; returns it and the slot it claimed."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError(f"holder failed: {proc.stderr.read()}")
    return proc, int(line)


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL the holder (no cleanup code runs) and reap it."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_concurrent_claims_get_distinct_slots_and_third_times_out(tmp_path):
    with claim_gpu(2, tmp_path, env={}) as a, claim_gpu(2, tmp_path, env={}) as b:
        assert {a, b} == {0, 1}
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match=str(tmp_path)):
            with claim_gpu(2, tmp_path, env={}, timeout=0.3, poll=0.05):
                pass
        assert 0.25 < time.monotonic() - t0 < 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu0.lock", "gpu1.lock"]


def test_release_frees_the_slot_for_the_next_claim(tmp_path):
    with claim_gpu(2, tmp_path, env={}) as a:
        with claim_gpu(2, tmp_path, env={}) as b:
            assert (a, b) == (0, 1)
        with claim_gpu(2, tmp_path, env={}, timeout=0) as c:
            assert c == 1
    with pytest.raises(RuntimeError):
        with claim_gpu(2, tmp_path, env={}) as d:
            assert d == 0
            raise RuntimeError("job failed")
    with claim_gpu(2, tmp_path, env={}, timeout=0) as e:  # released despite the exception
        assert e == 0


def test_waiting_claim_gets_slot_freed_by_another_process(tmp_path):
    holder, held = start_holder(tmp_path)
    try:
        assert lock_path(tmp_path, held).read_text().strip() == str(holder.pid)
        with claim_gpu(2, tmp_path, env={}, timeout=0) as mine:
            assert mine == 1 - held  # processes exclude each other
            # Both slots taken: this claim waits until the holder dies holding its lock.
            timer = threading.Timer(0.4, kill, args=(holder,))
            t0 = time.monotonic()
            timer.start()
            try:
                with claim_gpu(2, tmp_path, env={}, timeout=20, poll=0.05) as freed:
                    waited = time.monotonic() - t0
                    assert freed == held
            finally:
                timer.join()
            assert 0.35 < waited < 20
    finally:
        if holder.poll() is None:
            kill(holder)


def test_killed_holder_frees_its_slot(tmp_path):
    holder, held = start_holder(tmp_path)
    assert held == 0
    try:
        with pytest.raises(TimeoutError):  # the only slot is held by the other process
            with claim_gpu(1, tmp_path, env={}, timeout=0.2, poll=0.05):
                pass
    finally:
        kill(holder)
    with claim_gpu(1, tmp_path, env={}, timeout=0) as i:
        assert i == 0


@pytest.mark.parametrize("var", ["CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS"])
def test_scheduler_assignment_claims_nothing(tmp_path, var):
    lock_dir = tmp_path / "locks"
    with claim_gpu(2, lock_dir, env={var: "3"}) as i:
        assert i is None
    with claim_gpu(2, lock_dir, env={"PATH": "/bin", var: ""}) as i:  # set but empty still counts
        assert i is None
    assert not lock_dir.exists()


def test_default_env_is_the_process_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with claim_gpu(2, tmp_path / "locks") as i:
        assert i is None
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    for name in ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS"):
        monkeypatch.delenv(name, raising=False)
    with claim_gpu(2, tmp_path / "locks") as i:
        assert i == 0


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError, match="n_gpus"):
        with claim_gpu(0, tmp_path, env={}):
            pass
    with pytest.raises(ValueError):
        with claim_gpu(1, tmp_path, env={}, timeout=-1):
            pass


def test_visible_devices_env_and_gpu_count(monkeypatch):
    assert visible_devices_env(3) == {"CUDA_VISIBLE_DEVICES": "3"}
    monkeypatch.setenv("PATH", "")  # no nvidia-smi to be found
    assert physical_gpu_count() == 0
