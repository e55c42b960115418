"""Atomic file writes: every artifact appears under its final name only when complete."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` only if the block succeeds.

    A file that exists under its final name is therefore always complete. A writer killed
    outright (SIGKILL, power loss) leaves its temporary `.<name>.<pid>.tmp` behind; the next
    writer of `path` removes such leftovers, but only those whose pid is no longer alive, so
    two writers of one artifact (e.g. two runs after a misused `--unlock`) never delete each
    other's file: each renames its own complete file, the last one wins.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in stale_temporaries(path):
        old.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (signal 0 checks without signalling)."""
    if pid <= 0:
        return False  # 0 and negatives address process groups, never a writer
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _writer_pid(name: str, prefix: str) -> int | None:
    """The pid in `<prefix><pid>.tmp`, or None when the name is not an atomic_path temporary of this
    prefix."""
    if not (name.startswith(prefix) and name.endswith(".tmp")):
        return None
    digits = name[len(prefix) : -4]
    return int(digits) if digits.isdigit() else None


def stale_temporaries(path: str | Path) -> list[Path]:
    """Temporary files of earlier atomic_path writers of `path` that never got renamed and whose
    writer process is gone (a live writer's file is still being written, so it is left alone).

    The pid is checked on this machine only: on a shared file system a writer on another node
    is not seen, but one job writes a given artifact at a time there (Snakemake's lock).
    """
    path = Path(path)
    prefix = f".{path.name}."
    if not path.parent.is_dir():
        return []
    stale = []
    for p in path.parent.iterdir():
        pid = _writer_pid(p.name, prefix)
        if pid is not None and not pid_alive(pid):
            stale.append(p)
    return sorted(stale)
