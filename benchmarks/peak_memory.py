"""Peak resident memory of one pipeline stage, run alone in a fresh Python process (benchmarks/memory.py).

The child reads its own high-water mark (VmHWM in /proc/self/status: per address space, so it
starts afresh at exec, unlike getrusage's ru_maxrss, which a forked child inherits from its parent).

``measure(..., malloc=...)`` pins glibc's allocator in the child (``MALLOC_SETTINGS``), and
``patch`` sets module constants there (e.g. a stage's block size) before the stage runs: what
tests/test_memory.py needs to see a small growth reliably.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MARK = "PASM-PEAK-MEMORY "

MALLOC_SETTINGS = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_THRESHOLD_": str(64 * 1024),
    "MALLOC_TRIM_THRESHOLD_": str(128 * 1024),
}
"""glibc allocator settings that make the resident size follow the memory in use. By default the
mmap threshold rises (up to 32 MiB) each time a large block is freed, so later large arrays come
from the heap, whose free space is returned to the system only from its top: the peak then depends
on the order of past allocations (it can creep with the number of blocks a stage has processed),
and each thread may get an arena of its own. A fixed threshold sends every block of 64 KiB or more
to its own mapping, unmapped when freed; a low trim threshold and one arena keep the heap small.
Measured: a training loop's resident size stays within 2 MiB (default: wanders over 35 MiB; 256 KiB
and two arenas: creeps 17 MiB over 50 steps), at the cost of about 1.7x the time per training step
(fresh pages for every large block): for measurements, not for runs."""


def _status_mb(*fields: str) -> dict[str, float]:
    """Fields of /proc/self/status (kB) in MiB; {} where there is none (not Linux)."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {}
    return {
        key: int(rest.split()[0]) / 1024.0
        for key, _, rest in (line.partition(":") for line in lines)
        if key in fields
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB."""
    peak = _status_mb("VmHWM").get("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> dict[str, float]:
    """This process's resident memory now, in MiB: all, anonymous and file-backed ({} off Linux)."""
    return _status_mb("VmRSS", "RssAnon", "RssFile")


def measure(
    target: str,
    kwargs: dict[str, Any],
    *,
    threads: int | None = None,
    log_path: str | Path | None = None,
    timeout: float | None = None,
    malloc: bool = False,
    patch: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Run ``target`` ("module:function") with keyword arguments ``kwargs`` (JSON values) in a child
    Python; returns its peak resident MiB, wall seconds and CPU seconds (user + system, which load
    on the machine changes less than wall time). The child's output goes to ``log_path``.

    ``malloc``: pin the allocator (MALLOC_SETTINGS). ``patch``: {"module:NAME": value} set in the
    child before the stage runs, e.g. {"pasm.workflow.search:SEARCH_BLOCK": 64}."""
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), PASM_TORCH_THREADS=str(threads))
    if malloc:
        env.update(MALLOC_SETTINGS)
    spec = json.dumps({"target": target, "kwargs": kwargs, "patch": patch or {}})
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
    for where, value in job.get("patch", {}).items():
        module, name = where.split(":")
        if not hasattr(importlib.import_module(module), name):
            raise AttributeError(f"patch {where}: {module} has no {name}")
        setattr(importlib.import_module(module), name, value)
    module, name = job["target"].split(":")
    fn = getattr(importlib.import_module(module), name)
    start = rss_mb()
    t0 = time.perf_counter()
    fn(**job["kwargs"])
    seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    end = rss_mb()
    result = {
        "peak_mb": round(peak_rss_mb(), 1),
        "seconds": round(seconds, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),  # the whole child, imports included
        "start_mb": round(start.get("VmRSS", float("nan")), 1),  # imports done, before the stage runs
        "start_anon_mb": round(start.get("RssAnon", float("nan")), 1),
        "end_anon_mb": round(end.get("RssAnon", float("nan")), 1),
        "end_file_mb": round(end.get("RssFile", float("nan")), 1),
    }
    print(MARK + json.dumps(result), flush=True)


if __name__ == "__main__":
    _child(sys.argv[1])
