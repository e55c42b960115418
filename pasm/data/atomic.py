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
    outright (SIGKILL, power loss) leaves its temporary file behind; the next writer of `path`
    removes such leftovers (one job writes a given artifact at a time, so none is in use).
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


def stale_temporaries(path: str | Path) -> list[Path]:
    """Temporary files of earlier atomic_path writers of `path` that never got renamed."""
    path = Path(path)
    prefix = f".{path.name}."
    if not path.parent.is_dir():
        return []
    return sorted(
        p for p in path.parent.iterdir()
        if p.name.startswith(prefix) and p.name.endswith(".tmp") and p.name[len(prefix):-4].isdigit()
    )
