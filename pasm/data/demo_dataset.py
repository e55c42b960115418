"""Writing the demo data set: PNG faces in the folder layout, drawn by worker processes, and a manifest."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from pasm.data.atomic import atomic_path
from pasm.data.demo_render import REGIONS, check_size, image_seeds, render_one
from pasm.data.labels import CLASSES, NUM_CLASSES

SPLITS: tuple[str, ...] = ("train", "val", "test", "occlusion")
"""Splits written by write_demo_dataset, in manifest order."""

DEFAULT_PER_CLASS: dict[str, int] = {"train": 300, "val": 50, "test": 100, "occlusion": 100}
"""Images per class per split of the default demo set."""

MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS: tuple[str, ...] = ("path", "split", "label", "true_label", "noisy", "occluded_region")

_MIN_JOBS_PER_WORKER = 200  # helper processes only pay off for sets larger than this


def _resolve_per_class(per_class: dict[str, int] | None) -> dict[str, int]:
    """Merge per_class over the defaults, rejecting unknown splits and bad counts."""
    counts = dict(DEFAULT_PER_CLASS)
    if per_class is None:
        return counts
    unknown = [k for k in per_class if k not in SPLITS]
    if unknown:
        class_keys = [k for k in unknown if isinstance(k, str) and k.strip().lower() in CLASSES]
        hint = (
            f" ({class_keys} are class names; per_class maps split names to images per class)"
            if class_keys
            else ""
        )
        raise ValueError(f"unknown split name(s) in per_class: {unknown}{hint}; known splits: {list(SPLITS)}")
    for split, n in per_class.items():
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"per_class[{split!r}] must be a non-negative int, got {n!r}")
        counts[split] = int(n)
    return counts


def _default_workers() -> int:
    """Number of CPUs this process may use, capped at 4 (the writer's parallelism)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not available on every platform
        n = os.cpu_count() or 1
    return max(1, min(4, n))


def _write_images(jobs: list[tuple[str, int, int, int]], size: int) -> None:
    """Render and save (path, expression, occluded region, seed) jobs as PNG files."""
    for path, expr, occ, seed in jobs:
        Image.fromarray(render_one(expr, occ, seed, size)).save(path, format="PNG")


def _worker_main(job_file: str) -> None:
    """Entry point of a helper interpreter: write the images listed in a JSON job file."""
    with open(job_file, encoding="utf-8") as fh:
        task = json.load(fh)
    _write_images([tuple(job) for job in task["jobs"]], int(task["size"]))


def _write_images_parallel(jobs: list[tuple[str, int, int, int]], size: int, workers: int) -> None:
    """Share the jobs between this process and workers - 1 helper interpreters.

    Helpers are plain `python -c` processes importing this module, which avoids the fork and
    main-module re-import pitfalls of multiprocessing; each image depends only on its own
    seed, so the output does not depend on how the jobs are shared.
    """
    parts = [jobs[i::workers] for i in range(workers)]
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    code = "import sys; from pasm.data.demo_dataset import _worker_main; _worker_main(sys.argv[1])"
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="pasm-demo-") as tmp:
        try:
            for k, part in enumerate(parts[1:]):
                job_file = os.path.join(tmp, f"jobs{k}.json")
                with open(job_file, "w", encoding="utf-8") as fh:
                    json.dump({"size": size, "jobs": part}, fh)
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-c", code, job_file],
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                    )
                )
            _write_images(parts[0], size)
            failures = []
            for proc in procs:
                _, err = proc.communicate()
                if proc.returncode != 0:
                    failures.append(err.decode(errors="replace").strip()[-2000:])
            if failures:
                raise RuntimeError("demo image worker failed:\n" + "\n".join(failures))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()


def write_demo_dataset(
    root: str | Path,
    seed: int = 0,
    size: int = 64,
    per_class: dict[str, int] | None = None,
    label_noise: float = 0.03,
    *,
    workers: int | None = None,
) -> Path:
    """Write the demo set as PNGs under root/<split>/<class>/ plus root/manifest.csv.

    per_class overrides DEFAULT_PER_CLASS split by split (0 skips a split).  label_noise is the
    fraction of train images filed under a wrong class.  workers (default: usable CPUs, at most
    4) only changes speed, never the output.  The manifest is written last and atomically, so
    its presence means the set is complete; returns its path.
    """
    check_size(size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not 0.0 <= float(label_noise) < 1.0:
        raise ValueError(f"label_noise must lie in [0, 1), got {label_noise!r}")
    if workers is None:
        workers = _default_workers()
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    counts = _resolve_per_class(per_class)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    manifest = root / MANIFEST_NAME
    manifest.unlink(missing_ok=True)  # an interrupted rewrite must not look complete

    rows: list[tuple[str, str, str, str, bool, str]] = []
    jobs: list[tuple[str, int, int, int]] = []
    for split_idx, split in enumerate(SPLITS):
        split_dir = root / split
        if split_dir.is_dir():  # drop our own images from an earlier run
            for old in split_dir.glob(f"*/{split}_*.png"):
                old.unlink()
        n_class = counts[split]
        if n_class == 0:
            continue
        rng = np.random.default_rng([int(seed), split_idx])
        n = n_class * NUM_CLASSES
        truth = rng.permutation(np.repeat(np.arange(NUM_CLASSES), n_class))
        occ = np.full(n, -1, dtype=np.int64)
        if split == "occlusion":  # every image occluded; regions balanced within each class
            for c in range(NUM_CLASSES):
                pos = np.flatnonzero(truth == c)
                occ[pos] = rng.permutation((np.arange(pos.size) + c * n_class) % len(REGIONS))
        labels = truth.copy()
        noisy = np.zeros(n, dtype=bool)
        if split == "train" and label_noise > 0:
            k = int(round(label_noise * n))
            idx = rng.choice(n, size=k, replace=False)
            labels[idx] = (truth[idx] + rng.integers(1, NUM_CLASSES, size=k)) % NUM_CLASSES
            noisy[idx] = True
        seeds = image_seeds(rng, n)
        for c in np.unique(labels):
            (split_dir / CLASSES[c]).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rel = f"{split}/{CLASSES[labels[i]]}/{split}_{i:05d}.png"
            jobs.append((str(root / rel), int(truth[i]), int(occ[i]), int(seeds[i])))
            region = REGIONS[occ[i]] if occ[i] >= 0 else ""
            rows.append((rel, split, CLASSES[labels[i]], CLASSES[truth[i]], bool(noisy[i]), region))

    workers = min(int(workers), max(1, len(jobs) // _MIN_JOBS_PER_WORKER))
    if workers > 1 and sys.executable:
        _write_images_parallel(jobs, size, workers)
    else:
        _write_images(jobs, size)

    with atomic_path(manifest) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(rows)
    return manifest
