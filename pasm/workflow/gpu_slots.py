"""Give each concurrent GPU job on one machine its own GPU, using lock files.

Snakemake can cap how many jobs use GPUs at once (``resources: gpu=1`` with ``--resources gpu=N``)
but does not tell a job which device to use, so side-by-side search shards would all land on
cuda:0. ``claim_gpu`` takes the first free slot ``lock_dir/gpu<i>.lock`` with an exclusive
``flock``; the kernel drops the lock when the holder closes it or dies (even by SIGKILL), so a
crashed job never leaves a slot taken. Cluster schedulers that assign GPUs themselves (they set
CUDA_VISIBLE_DEVICES or SLURM_JOB_GPUS / SLURM_STEP_GPUS) are left alone.

Ordering: CUDA reads CUDA_VISIBLE_DEVICES once, when the driver is initialised in the process
(the first torch.cuda call, including ``torch.cuda.is_available()`` and ``device_count()`` when
NVML is unavailable). Claim and set ``visible_devices_env(index)`` in ``os.environ`` before any
such call; importing torch is fine. Use the lock directory on a local file system shared by all
jobs of the machine (flock over NFS is unreliable), and do not fork while holding a slot (a forked
child shares the lock until it exits).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

__all__ = [
    "SCHEDULER_VARS",
    "claim_gpu",
    "visible_devices_env",
    "scheduler_assigned",
    "physical_gpu_count",
    "lock_path",
]

# Variables through which a scheduler has already chosen this job's GPUs.
SCHEDULER_VARS = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS")


def scheduler_assigned(env: Mapping[str, str]) -> bool:
    """True when ``env`` already names this job's GPUs (any SCHEDULER_VARS is set, even empty)."""
    return any(name in env for name in SCHEDULER_VARS)


def visible_devices_env(index: int) -> dict[str, str]:
    """Environment restricting CUDA to physical GPU ``index`` (then seen as cuda:0); must be in
    os.environ before CUDA is initialised in the process."""
    return {"CUDA_VISIBLE_DEVICES": str(int(index))}


def lock_path(lock_dir: str | Path, index: int) -> Path:
    """The lock file of GPU slot ``index``."""
    return Path(lock_dir) / f"gpu{index}.lock"


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive flock on ``path`` (created if missing), or None when
    another open file description holds it; the holder's pid is written in for diagnostics."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _release(fd: int) -> None:
    """Unlock and close a slot's descriptor (the lock file stays: deleting it would race)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holders(lock_dir: Path, n_gpus: int) -> str:
    """'gpu0.lock: pid 123, ...' from the pids written in the lock files (best effort)."""
    parts = []
    for i in range(n_gpus):
        try:
            pid = lock_path(lock_dir, i).read_text().strip() or "?"
        except OSError:
            pid = "?"
        parts.append(f"gpu{i}.lock: pid {pid}")
    return ", ".join(parts)


def _acquire(n_gpus: int, lock_dir: Path, timeout: float, poll: float) -> tuple[int, int]:
    """(index, descriptor) of the first free slot, polling every ``poll`` s until ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        for i in range(n_gpus):
            fd = _try_lock(lock_path(lock_dir, i))
            if fd is not None:
                return i, fd
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(
                f"all {n_gpus} GPU slots in lock directory {lock_dir} stayed taken for {timeout:g} s "
                f"({_holders(lock_dir, n_gpus)}); more GPU jobs run than GPUs exist: cap them with "
                f"snakemake --resources gpu={n_gpus}, or wait for or end the holders"
            )
        time.sleep(min(poll, left))


@contextmanager
def claim_gpu(
    n_gpus: int,
    lock_dir: str | Path,
    env: Mapping[str, str] | None = None,
    *,
    timeout: float = 3600.0,
    poll: float = 0.5,
) -> Iterator[int | None]:
    """Hold GPU slot i (the first free one of range(n_gpus)) for the block and yield i; yield None,
    claiming nothing, when a scheduler already assigned GPUs in ``env`` (default os.environ), in
    which case use cuda:0 of the visible set. Waits up to ``timeout`` s for a free slot
    (TimeoutError naming ``lock_dir``); released on exit, on exceptions and when the process dies.
    """
    if scheduler_assigned(os.environ if env is None else env):
        yield None
        return
    if n_gpus < 1:
        raise ValueError(f"n_gpus must be >= 1 to claim a GPU slot, got {n_gpus}")
    if timeout < 0 or poll <= 0:
        raise ValueError(f"timeout must be >= 0 and poll > 0, got {timeout} and {poll}")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    index, fd = _acquire(int(n_gpus), lock_dir, float(timeout), float(poll))
    try:
        yield index
    finally:
        _release(fd)


def physical_gpu_count() -> int:
    """NVIDIA GPUs on this machine, counted by ``nvidia-smi -L`` without touching CUDA in this
    process (so CUDA_VISIBLE_DEVICES can still be set afterwards); 0 without nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return 0
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.splitlines())


def gpu_slot(device: str, gpus: int, gpu_lock_dir: str | None) -> AbstractContextManager[int | None]:
    """Context manager holding a free GPU for this job (yields its index), or None without CUDA or
    under a scheduler. ``gpus``: GPUs of this machine (0: count them); ``gpu_lock_dir``: where the
    slot locks live (None: a per-user folder in the temp dir)."""
    if device == "cpu":
        return nullcontext(None)
    n = gpus or physical_gpu_count()
    if n == 0:
        return nullcontext(None)
    lock_dir = gpu_lock_dir or Path(tempfile.gettempdir()) / f"pasm-gpu-locks-{os.getuid()}"
    return claim_gpu(n, lock_dir)
