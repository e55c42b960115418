"""Where a job runs (pasm.workflow.placement): GPUs the profile gives are claimed distinctly, a job
given a GPU never runs on the CPU behind the user's back, and a scheduler's choice is respected."""

from __future__ import annotations

import os
import stat

import pytest

from pasm.workflow.placement import FAKE_GPUS, GPUUnavailable, placed, where_made


def test_without_a_gpu_from_the_profile_the_config_decides(tmp_path):
    with placed("evaluate", "cpu", 0, env={}) as where:
        assert where.device == "cpu" and where.gpu == ""
    with placed("evaluate", "auto", 0, env={}) as where:  # no CUDA on this machine
        assert where.device == ("cuda:0" if _cuda() else "cpu")


def test_concurrent_jobs_claim_distinct_gpus(tmp_path):
    env_a, env_b, env_c = ({FAKE_GPUS: "2"} for _ in range(3))
    with placed("pretrain", "auto", 1, lock_dir=tmp_path, env=env_a) as a:
        with placed("finetune", "auto", 1, lock_dir=tmp_path, env=env_b) as b:
            assert {a.gpu, b.gpu} == {"0", "1"}
            assert (env_a["CUDA_VISIBLE_DEVICES"], env_b["CUDA_VISIBLE_DEVICES"]) == (a.gpu, b.gpu)
            assert a.fake and a.device == "cpu" and "fake GPU" in a.describe()
        with placed("search_points", "auto", 1, lock_dir=tmp_path, env=env_c) as c:
            assert c.gpu == b.gpu  # b's slot was released
    assert where_made("cpu", env_a) == {"device": "cpu", "gpu": a.gpu}


def test_a_users_cuda_visible_devices_is_the_pool_shared_out(tmp_path):
    envs = [{FAKE_GPUS: "8", "CUDA_VISIBLE_DEVICES": "5,3"} for _ in range(2)]
    with placed("pretrain", "auto", 1, lock_dir=tmp_path, env=envs[0]) as a:
        with placed("pretrain", "auto", 1, lock_dir=tmp_path, env=envs[1]) as b:
            assert (a.gpu, b.gpu) == ("5", "3")
            assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["5", "3"]


def test_a_schedulers_gpus_are_used_as_given(tmp_path):
    env = {FAKE_GPUS: "1", "SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "2"}
    with placed("finetune", "auto", 1, lock_dir=tmp_path / "locks", env=env) as where:
        assert where.gpu == "2" and env["CUDA_VISIBLE_DEVICES"] == "2"
    assert not (tmp_path / "locks").exists()  # nothing claimed


def test_no_gpu_present_stops_the_job_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    with pytest.raises(GPUUnavailable) as err:
        with placed("pretrain", "auto", 1, lock_dir=tmp_path, env={}):
            pass
    message = str(err.value)
    assert "\n" not in message and "rule pretrain" in message and "has none" in message


def test_a_slot_beyond_the_machines_gpus_stops_the_job(tmp_path):
    with pytest.raises(GPUUnavailable, match=r"config gpus is 3, but this machine has 2 GPU\(s\)"):
        with placed("search_points", "auto", 1, machine_gpus=3, lock_dir=tmp_path, env={FAKE_GPUS: "2"}):
            pass


def test_a_gpu_that_torch_cannot_use_stops_the_job(tmp_path, monkeypatch):
    if _cuda():
        pytest.skip("this machine has a usable GPU")
    smi = tmp_path / "nvidia-smi"  # the machine lists two GPUs, but torch here has no CUDA
    smi.write_text("#!/bin/sh\necho 'GPU 0: Fake (UUID: GPU-0)'\necho 'GPU 1: Fake (UUID: GPU-1)'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    env: dict[str, str] = {}
    expected = "rule faces: the profile gives it a GPU, but GPU 0 is not usable"
    with pytest.raises(GPUUnavailable, match=expected):
        with placed("faces", "auto", 1, lock_dir=tmp_path / "locks", env=env):
            pass


def test_device_cpu_with_a_gpu_profile_is_a_contradiction(tmp_path):
    with pytest.raises(GPUUnavailable, match="config device is 'cpu'"):
        with placed("pretrain", "cpu", 1, lock_dir=tmp_path, env={FAKE_GPUS: "1"}):
            pass


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
