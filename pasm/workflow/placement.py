"""Where a job's network runs, decided once per job before CUDA starts, logged and recorded.

A rule runs on a GPU when the profile gives it one (resource ``gpu``: 1 in profiles/gpu and
profiles/slurm). Such a job never falls back to the CPU: when no GPU is usable it stops with one
line saying why. Under a scheduler that assigned GPUs itself (SLURM sets SLURM_JOB_GPUS or
SLURM_STEP_GPUS, or CUDA_VISIBLE_DEVICES inside a SLURM job) the job uses the first GPU it was
given. Otherwise the GPUs are this machine's (config ``gpus``, or counted with nvidia-smi), or
those a CUDA_VISIBLE_DEVICES of the user's shell names, and concurrent jobs claim distinct ones
through lock files (`pasm.workflow.gpu_slots`), each then seeing only its own as cuda:0.

A rule without a GPU from the profile runs where the config's ``device`` says (auto: cuda:0 when
CUDA is usable, else the CPU), as a single job on a workstation would.

PASM_FAKE_GPUS=N (tests only) pretends N usable GPUs: slots are claimed, logged and recorded as
for real ones, and the network runs on the CPU.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pasm.workflow.gpu_slots import claim_gpu, default_lock_dir, physical_gpu_count

log = logging.getLogger(__name__)

FAKE_GPUS = "PASM_FAKE_GPUS"
"""Environment variable of the tests' fake GPUs (their number)."""


class GPUUnavailable(SystemExit):
    """A job the profile gives a GPU cannot have one: exits 1 with one line, no traceback."""


@dataclass(frozen=True)
class Placement:
    """Where a job runs: the torch device name, and the GPU it holds (its CUDA_VISIBLE_DEVICES entry)."""

    device: str
    gpu: str = ""
    fake: bool = False

    def describe(self) -> str:
        if not self.gpu:
            return f"device {self.device}"
        fake = " (fake GPU for tests: runs on the CPU)" if self.fake else ""
        return f"device {self.device}, GPU {self.gpu}{fake}"


def scheduler_gpus(env: Mapping[str, str]) -> bool:
    """Whether a scheduler already chose this job's GPUs (SLURM's variables)."""
    return (
        "SLURM_JOB_GPUS" in env
        or "SLURM_STEP_GPUS" in env
        or ("SLURM_JOB_ID" in env and "CUDA_VISIBLE_DEVICES" in env)
    )


def _visible_entries(env: Mapping[str, str]) -> list[str] | None:
    """The GPUs a CUDA_VISIBLE_DEVICES names (None when unset; [] when set empty)."""
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _cuda_count() -> int:
    """GPUs torch can use in this process (initialises CUDA: call after CUDA_VISIBLE_DEVICES is final)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _check_usable(rule: str, where: str) -> None:
    if _cuda_count() < 1:
        import torch

        why = "torch was built without CUDA" if torch.version.cuda is None else "CUDA sees no GPU there"
        raise GPUUnavailable(f"rule {rule}: the profile gives it a GPU, but {where} is not usable ({why})")


def machine_slots(rule: str, machine_gpus: int, env: Mapping[str, str]) -> list[str]:
    """The GPUs concurrent jobs share out: those a user's CUDA_VISIBLE_DEVICES names, else 0..n-1 for
    the machine's n (config ``gpus``, checked against nvidia-smi; 0: counted). GPUUnavailable if none."""
    fake = int(env.get(FAKE_GPUS, "0") or 0)
    visible = _visible_entries(env)
    if visible is not None:
        if not visible:
            raise GPUUnavailable(
                f"rule {rule}: the profile gives it a GPU, but CUDA_VISIBLE_DEVICES is set empty "
                "(no GPU visible)"
            )
        return visible
    present = fake or physical_gpu_count()
    if present == 0:
        raise GPUUnavailable(
            f"rule {rule}: the profile gives it a GPU, but this machine has none (nvidia-smi lists no GPU); "
            "run without the GPU profile to use the CPU"
        )
    if machine_gpus > present:
        raise GPUUnavailable(
            f"rule {rule}: config gpus is {machine_gpus}, but this machine has {present} GPU(s) "
            f"(slots {present}..{machine_gpus - 1} do not exist); set gpus to {present} or 0 (count them)"
        )
    return [str(i) for i in range(machine_gpus or present)]


@contextmanager
def placed(
    rule: str,
    device: str,
    gpu: int,
    machine_gpus: int = 0,
    lock_dir: str | Path | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Placement]:
    """Decide where a job of ``rule`` runs and hold its GPU for the block.

    device: the config's device (auto, cpu, cuda); gpu: the GPUs the profile gives the rule (0 or
    1); env: the environment to read and, for a claimed GPU, to set (default os.environ).
    """
    env = os.environ if env is None else env
    fake = bool(int(env.get(FAKE_GPUS, "0") or 0))
    if gpu < 1:
        if device == "auto":
            device = "cuda:0" if _cuda_count() else "cpu"
        elif device == "cuda":
            device = "cuda:0"
        yield Placement(device)
        return
    if device == "cpu":
        raise GPUUnavailable(
            f"rule {rule}: the profile gives it a GPU, but config device is 'cpu'; "
            "set device: auto, or run without the GPU profile"
        )
    if scheduler_gpus(env):
        entries = _visible_entries(env) or []
        if not fake:
            given = env.get("CUDA_VISIBLE_DEVICES")
            _check_usable(rule, f"the scheduler's GPU (CUDA_VISIBLE_DEVICES={given})")
        yield Placement("cpu" if fake else "cuda:0", entries[0] if entries else "0", fake)
        return
    slots = machine_slots(rule, machine_gpus, env)
    with claim_gpu(slots, lock_dir or default_lock_dir()) as i:
        env["CUDA_VISIBLE_DEVICES"] = slots[i]  # before CUDA starts in this process: it sees only this GPU
        if not fake:
            _check_usable(rule, f"GPU {slots[i]}")
        yield Placement("cpu" if fake else "cuda:0", slots[i], fake)


def where_made(device: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """What an artifact records of where a job ran: the torch device, and the GPU it held (its
    CUDA_VISIBLE_DEVICES entry; empty on the CPU)."""
    env = os.environ if env is None else env
    on_gpu = device.startswith("cuda") or bool(int(env.get(FAKE_GPUS, "0") or 0))
    return {"device": device, "gpu": env.get("CUDA_VISIBLE_DEVICES", "") if on_gpu else ""}


def job_placement(job: Any) -> Any:
    """`placed` for a Snakemake job: its rule, the config's device, the profile's gpu resource, the
    config's gpus and gpu_lock_dir."""
    config = getattr(job, "config", {}) or {}
    return placed(
        job.rule,
        str(job.params.get("device", config.get("device", "cpu"))),
        int(job.resources.get("gpu", 0) or 0),
        int(config.get("gpus", 0) or 0),
        config.get("gpu_lock_dir") or None,
    )
