"""Stage helpers: shards cover the training set once, and the gather rejects bad coverage."""

import numpy as np
import pytest

from pasm.h5store import POINT_FIELDS, Faces, write_faces, write_table
from pasm.stages import gather_points, parse_scatteritem, shard_rows


@pytest.mark.parametrize("n_train, n_shards", [(10, 3), (7, 7), (100, 8), (3, 5), (0, 2)])
def test_shards_cover_exactly_once(n_train, n_shards):
    covered = np.concatenate([np.arange(*shard_rows(n_train, i, n_shards)) for i in range(1, n_shards + 1)])
    assert covered.tolist() == list(range(n_train))


def test_scatteritem_parsing():
    assert parse_scatteritem("3-of-8") == (3, 8)
    with pytest.raises(ValueError, match="shard"):
        parse_scatteritem("shard3")


def _setup(tmp_path):
    n = 6
    faces = Faces(
        images=np.zeros((n, 4, 4, 3), np.uint8), labels=np.zeros(n, np.int64),
        splits=np.array(["train", "test", "train", "train", "test", "train"]),
        sources=np.array([str(i) for i in range(n)]), status=np.array(["x"] * n),
    )
    write_faces(tmp_path / "faces.h5", faces)
    cfg = {"datasets": {"d": {"train_split": "train"}}}
    return cfg


def _shard(path, index):
    k = len(index)
    table = {f: np.zeros(k, np.int32) for f in POINT_FIELDS}
    table["index"] = np.asarray(index, np.int64)
    table["rgb"] = np.zeros((k, 3), np.uint8)
    write_table(path, table, {"model_sha256": "abc", "seconds": 1.0})
    return path


def test_gather_accepts_exact_cover(tmp_path):
    cfg = _setup(tmp_path)
    shards = [_shard(tmp_path / "1.h5", [0, 2]), _shard(tmp_path / "2.h5", [3, 5])]
    gather_points(shards, tmp_path / "faces.h5", "d", cfg, tmp_path / "points.h5")
    assert (tmp_path / "points.h5").exists()


@pytest.mark.parametrize("second, what", [([3, 3, 5], "1 duplicated"), ([3], "1 missing"), ([3, 5, 1], "1 not training")])
def test_gather_rejects_bad_cover(tmp_path, second, what):
    cfg = _setup(tmp_path)
    shards = [_shard(tmp_path / "1.h5", [0, 2]), _shard(tmp_path / "2.h5", second)]
    with pytest.raises(ValueError, match=what):
        gather_points(shards, tmp_path / "faces.h5", "d", cfg, tmp_path / "points.h5")
    assert not (tmp_path / "points.h5").exists()
