"""A full disk ends an HDF5 writer in an OSError naming the artifact and leaves nothing under its name,
never in SIGSEGV (issue 21: HDF5 crashed closing a file after a failed write, so Snakemake reported
a segfault). Each write runs in a child process: a crash there is a return code of -11, not a
dead test run."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import REPO

WRITE = r"""
import sys
import numpy as np
from pasm.data.h5store import FacesWriter, write_groups, write_table

writer, path = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
if writer == "faces":  # faces.h5 (FacesWriter), 5 MiB of images
    with FacesWriter(path, 64) as out:
        for i in range(400):
            out.append(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), i % 7, "train", f"{i}.png", "ok")
        out.finish(attrs={"dataset": "full"})
elif writer == "table":  # 5 MiB in one column
    write_table(path, {"images": rng.integers(0, 256, (400, 64, 64, 3), dtype=np.uint8)}, {"k": 1})
elif writer == "table_blocks":  # masked.h5's images, made block by block
    blocks = (rng.integers(0, 256, (50, 64, 64, 3), dtype=np.uint8) for _ in range(8))
    write_table(path, {"label": np.zeros(400, np.int64)}, images=((400, 64, 64, 3), blocks))
elif writer == "groups":
    write_groups(path, {f"splits/{i}": {"x": rng.random((40000,))} for i in range(16)})
else:
    write_table(path, {"a": np.arange(10)})  # small: fits
"""
WRITERS = ["faces", "table", "table_blocks", "groups"]


def _write(writer: str, path: Path, fsize_limit: int | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:  # in the child: writes past fsize_limit bytes fail (EFBIG), as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))

    return subprocess.run(
        [sys.executable, "-c", WRITE, writer, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=limit if fsize_limit else None,
    )


def _assert_clean_failure(proc: subprocess.CompletedProcess, path: Path, message: str) -> None:
    assert proc.returncode != -signal.SIGSEGV, f"the writer crashed (SIGSEGV):\n{proc.stderr[-3000:]}"
    assert proc.returncode == 1, f"return code {proc.returncode}:\n{proc.stderr[-3000:]}"
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("OSError:") and message in last and str(path) in last, proc.stderr[-3000:]
    assert "Segmentation fault" not in proc.stderr
    assert not path.exists(), "a partial artifact was left under the final name"
    assert list(path.parent.iterdir()) == [], "the temporary file was left behind"


@pytest.fixture
def full_disk(tmp_path):
    """A 2 MiB tmpfs mounted under tmp_path (needs root, or CAP_SYS_ADMIN, and the mount command)."""
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if os.geteuid() != 0 or not (mount and umount):
        pytest.skip("mounting a small tmpfs needs root and mount(8); the RLIMIT_FSIZE tests cover the rest")
    where = tmp_path / f"disk-{uuid.uuid4().hex[:8]}"
    where.mkdir()
    proc = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(where)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield where
    finally:
        if subprocess.run([umount, str(where)], capture_output=True).returncode != 0:
            subprocess.run([umount, "-l", str(where)], capture_output=True)


@pytest.mark.parametrize("writer", WRITERS)
def test_a_full_disk_fails_cleanly(full_disk, writer):
    path = full_disk / "artifact.h5"
    proc = _write(writer, path)
    _assert_clean_failure(proc, path, "No space left on device")
    small = _write("small", full_disk / "small.h5")  # the space is freed again: a small artifact fits
    assert small.returncode == 0, small.stderr[-3000:]
    assert [p.name for p in full_disk.iterdir()] == ["small.h5"]


@pytest.mark.parametrize("writer", WRITERS)
def test_a_file_size_limit_fails_cleanly(tmp_path, writer):
    """The same failure without a mount: the child may not write files over 1 MiB (EFBIG)."""
    out = tmp_path / "out"
    out.mkdir()
    proc = _write(writer, out / "artifact.h5", fsize_limit=2**20)
    _assert_clean_failure(proc, out / "artifact.h5", "File too large")
