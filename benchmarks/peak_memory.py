"""Peak resident memory of one pipeline stage, run alone in a fresh Python process (benchmarks/memory.py).

The child reads its own high-water mark (VmHWM in /proc/self/status: per address space, so it
starts afresh at exec, unlike getrusage's ru_maxrss, which a forked child inherits from its parent).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MARK = "PASM-PEAK-MEMORY "


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(
    target: str,
    kwargs: dict[str, Any],
    *,
    threads: int | None = None,
    log_path: str | Path | None = None,
    timeout: float | None = None,
) -> dict[str, float]:
    """Run ``target`` ("module:function") with keyword arguments ``kwargs`` (JSON values) in a child
    Python; returns its peak resident MiB and wall seconds. The child's output goes to ``log_path``."""
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), PASM_TORCH_THREADS=str(threads))
    spec = json.dumps({"target": target, "kwargs": kwargs})
    out = open(log_path, "w") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.run(
            [sys.executable, __file__, spec],
            env=env,
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
            timeout=timeout,
        )
    finally:
        if log_path:
            out.close()
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        where = f"; see {log_path}" if log_path else ""
        raise RuntimeError(f"stage {target} failed with exit code {proc.returncode}{where}")
    return json.loads(lines[-1][len(MARK) :])


def _child(spec: str) -> None:
    """Run one stage and print its peak memory (the child side of ``measure``)."""
    import logging

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    job = json.loads(spec)
    if os.environ.get("PASM_TORCH_THREADS"):
        import torch

        torch.set_num_threads(int(os.environ["PASM_TORCH_THREADS"]))
    module, name = job["target"].split(":")
    fn = getattr(importlib.import_module(module), name)
    t0 = time.perf_counter()
    fn(**job["kwargs"])
    print(
        MARK
        + json.dumps({"peak_mb": round(peak_rss_mb(), 1), "seconds": round(time.perf_counter() - t0, 2)}),
        flush=True,
    )


if __name__ == "__main__":
    _child(sys.argv[1])
