"""HDF5 artifacts round-trip, and a failed write leaves nothing under the final name."""

import os
import subprocess
import sys

import numpy as np
import pytest

from pasm.data.atomic import atomic_path, pid_alive, stale_temporaries
from pasm.data.h5store import Faces, FacesWriter, read_faces, read_table, write_faces, write_table


def _faces(n=5):
    rng = np.random.default_rng(0)
    return Faces(
        images=rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8),
        labels=np.arange(n) % 7,
        splits=np.array(["train", "train", "test", "val", "test"][:n]),
        sources=np.array([f"img{i}.png" for i in range(n)]),
        status=np.array(["pre-aligned"] * n),
        subsets={"occl": np.array([False, False, True, False, False][:n])},
        attrs={"dataset": "x", "classes": ["a"]},
    )


def test_faces_round_trip(tmp_path):
    f = _faces()
    write_faces(tmp_path / "faces.h5", f)
    g = read_faces(tmp_path / "faces.h5")
    assert (g.images == f.images).all() and (g.labels == f.labels).all()
    assert g.splits.tolist() == f.splits.tolist() and g.sources.tolist() == f.sources.tolist()
    assert g.attrs == f.attrs
    assert g.rows("test").tolist() == [2, 4] and g.rows("occl").tolist() == [2]
    with pytest.raises(KeyError, match="nope"):
        g.rows("nope")


def test_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "out.h5"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftover_of_a_killed_writer_is_removed_by_the_next_one(tmp_path):
    target = tmp_path / "out.h5"
    dead = _dead_pid()
    (tmp_path / f".out.h5.{dead}.tmp").write_bytes(b"half")  # a SIGKILLed writer's temporary file
    (tmp_path / f".other.h5.{dead}.tmp").write_bytes(b"someone else's")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".other.h5.{dead}.tmp", "out.h5"]


def test_a_live_writers_temporary_is_left_alone(tmp_path):
    target = tmp_path / "out.h5"
    writer = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"]
    )  # another run, still writing
    try:
        live = tmp_path / f".out.h5.{writer.pid}.tmp"
        live.write_bytes(b"being written")
        dead = tmp_path / f".out.h5.{_dead_pid()}.tmp"
        dead.write_bytes(b"half")
        assert stale_temporaries(target) == [dead]
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"whole")
        assert live.read_bytes() == b"being written" and not dead.exists()
    finally:
        writer.kill()
        writer.wait()
    assert stale_temporaries(target) == [live]  # its writer is gone now


def test_pid_alive_for_other_users_processes(monkeypatch):
    assert pid_alive(os.getpid()) and not pid_alive(0) and not pid_alive(_dead_pid())

    def not_permitted(pid, sig):
        raise PermissionError(1, "Operation not permitted")  # what a non-root user gets for another's process

    monkeypatch.setattr(os, "kill", not_permitted)
    assert pid_alive(1)


def test_table_round_trip_and_length_check(tmp_path):
    write_table(tmp_path / "t.h5", {"a": np.arange(3), "b": np.ones((3, 3), np.uint8)}, {"k": 1})
    t, attrs = read_table(tmp_path / "t.h5")
    assert t["a"].tolist() == [0, 1, 2] and t["b"].shape == (3, 3) and attrs == {"k": 1}
    with pytest.raises(ValueError, match="differ in length"):
        write_table(tmp_path / "u.h5", {"a": np.arange(3), "b": np.arange(2)})
    assert not (tmp_path / "u.h5").exists()


def test_faces_writer_leaves_nothing_without_finish_or_after_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="before finish"):
        with FacesWriter(tmp_path / "a.h5", 8) as out:
            out.append(np.zeros((8, 8, 3), np.uint8), 0, "train", "x.png", "ok")
    with pytest.raises(ValueError, match="stop"):
        with FacesWriter(tmp_path / "b.h5", 8) as out:
            out.append(np.zeros((8, 8, 3), np.uint8), 0, "train", "x.png", "ok")
            raise ValueError("stop")  # the block's own error propagates unchanged
    assert list(tmp_path.iterdir()) == []
