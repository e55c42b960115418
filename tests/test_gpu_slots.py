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

from pasm.workflow.gpu_slots import claim_gpu, lock_path, physical_gpu_count

REPO = Path(__file__).resolve().parents[1]

# A separate process that claims a slot, reports it on stdout, then sleeps until killed.
HOLDER = """
import sys, time
from pasm.workflow.gpu_slots import claim_gpu
with claim_gpu(2, sys.argv[1], timeout=0) as i:
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
    with claim_gpu(2, tmp_path) as a, claim_gpu(2, tmp_path) as b:
        assert {a, b} == {0, 1}
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match=str(tmp_path)):
            with claim_gpu(2, tmp_path, timeout=0.3, poll=0.05):
                pass
        assert 0.25 < time.monotonic() - t0 < 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu0.lock", "gpu1.lock"]


def test_release_frees_the_slot_for_the_next_claim(tmp_path):
    with claim_gpu(2, tmp_path) as a:
        with claim_gpu(2, tmp_path) as b:
            assert (a, b) == (0, 1)
        with claim_gpu(2, tmp_path, timeout=0) as c:
            assert c == 1
    with pytest.raises(RuntimeError):
        with claim_gpu(2, tmp_path) as d:
            assert d == 0
            raise RuntimeError("job failed")
    with claim_gpu(2, tmp_path, timeout=0) as e:  # released despite the exception
        assert e == 0


def test_waiting_claim_gets_slot_freed_by_another_process(tmp_path):
    holder, held = start_holder(tmp_path)
    try:
        assert lock_path(tmp_path, held).read_text().strip() == str(holder.pid)
        with claim_gpu(2, tmp_path, timeout=0) as mine:
            assert mine == 1 - held  # processes exclude each other
            # Both slots taken: this claim waits until the holder dies holding its lock.
            timer = threading.Timer(0.4, kill, args=(holder,))
            t0 = time.monotonic()
            timer.start()
            try:
                with claim_gpu(2, tmp_path, timeout=20, poll=0.05) as freed:
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
            with claim_gpu(1, tmp_path, timeout=0.2, poll=0.05):
                pass
    finally:
        kill(holder)
    with claim_gpu(1, tmp_path, timeout=0) as i:
        assert i == 0


def test_named_slots_are_claimed_by_name(tmp_path):
    with claim_gpu(["3", "GPU-1a2b/c"], tmp_path) as a, claim_gpu(["3", "GPU-1a2b/c"], tmp_path) as b:
        assert (a, b) == (0, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu3.lock", "gpuGPU-1a2b_c.lock"]


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError, match="no GPU slots"):
        with claim_gpu(0, tmp_path):
            pass
    with pytest.raises(ValueError):
        with claim_gpu(1, tmp_path, timeout=-1):
            pass


def test_gpu_count_without_nvidia_smi(monkeypatch):
    monkeypatch.setenv("PATH", "")  # no nvidia-smi to be found
    assert physical_gpu_count() == 0
