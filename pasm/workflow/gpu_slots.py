"""Give each concurrent GPU job on one machine its own GPU, using lock files.

Snakemake can cap how many jobs use GPUs at once (``resources: gpu=1`` with ``--resources gpu=N``)
but does not tell a job which device to use, so side-by-side jobs would all land on cuda:0.
``claim_gpu`` takes the first free slot ``lock_dir/gpu<name>.lock`` with an exclusive ``flock``;
the kernel drops the lock when the holder closes it or dies (even by SIGKILL), so a crashed job
never leaves a slot taken. Which slots exist, and whether a scheduler chose the GPUs already, is
decided by `pasm.workflow.placement`.

Use the lock directory on a local file system shared by all jobs of the machine (flock over NFS is
unreliable), and do not fork while holding a slot (a forked child shares the lock until it exits).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["claim_gpu", "default_lock_dir", "physical_gpu_count", "lock_path"]


def lock_path(lock_dir: str | Path, slot: int | str) -> Path:
    """The lock file of GPU slot ``slot`` (an index, or a CUDA_VISIBLE_DEVICES entry such as a UUID)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(slot))
    return Path(lock_dir) / f"gpu{name}.lock"


def default_lock_dir() -> Path:
    """The per-user folder of slot locks in the temp dir (config key gpu_lock_dir overrides it)."""
    return Path(tempfile.gettempdir()) / f"pasm-gpu-locks-{os.getuid()}"


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


def _holders(lock_dir: Path, slots: Sequence[int | str]) -> str:
    """'gpu0.lock: pid 123, ...' from the pids written in the lock files (best effort)."""
    parts = []
    for slot in slots:
        path = lock_path(lock_dir, slot)
        try:
            pid = path.read_text().strip() or "?"
        except OSError:
            pid = "?"
        parts.append(f"{path.name}: pid {pid}")
    return ", ".join(parts)


def _acquire(slots: Sequence[int | str], lock_dir: Path, timeout: float, poll: float) -> tuple[int, int]:
    """(position in slots, descriptor) of the first free slot, polling every ``poll`` s until
    ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        for i, slot in enumerate(slots):
            fd = _try_lock(lock_path(lock_dir, slot))
            if fd is not None:
                return i, fd
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(
                f"all {len(slots)} GPU slots in lock directory {lock_dir} stayed taken for {timeout:g} s "
                f"({_holders(lock_dir, slots)}); more GPU jobs run than GPUs exist: cap them with "
                f"snakemake --resources gpu={len(slots)}, or wait for or end the holders"
            )
        time.sleep(min(poll, left))


@contextmanager
def claim_gpu(
    slots: int | Sequence[int | str],
    lock_dir: str | Path,
    *,
    timeout: float = 3600.0,
    poll: float = 0.5,
) -> Iterator[int]:
    """Hold the first free of ``slots`` (a count: range(n); or the names of the GPUs) for the block
    and yield its position. Waits up to ``timeout`` s for a free slot (TimeoutError naming
    ``lock_dir``); released on exit, on exceptions and when the process dies."""
    slots = list(range(slots)) if isinstance(slots, int) else list(slots)
    if not slots:
        raise ValueError("no GPU slots to claim")
    if timeout < 0 or poll <= 0:
        raise ValueError(f"timeout must be >= 0 and poll > 0, got {timeout} and {poll}")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    index, fd = _acquire(slots, lock_dir, float(timeout), float(poll))
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
