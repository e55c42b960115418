"""Stage helpers: shards cover the training set once, the gather rejects bad coverage, and a rule's
names become its stage's keywords."""

import numpy as np
import pytest

from pasm.data.h5store import POINT_FIELDS, Faces, write_faces, write_table
from pasm.workflow.common import train_rows
from pasm.workflow.run import STAGES, stage_arguments
from pasm.workflow.search import gather_points, parse_scatteritem, shard_rows


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
        images=np.zeros((n, 4, 4, 3), np.uint8),
        labels=np.zeros(n, np.int64),
        splits=np.array(["train", "test", "train", "train", "test", "train"]),
        sources=np.array([str(i) for i in range(n)]),
        status=np.array(["x"] * n),
    )
    write_faces(tmp_path / "faces.h5", faces)
    cfg = {"seed": 0, "train_split": "train", "train_subset": None}
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
    gather_points(shards=shards, faces=tmp_path / "faces.h5", points=tmp_path / "points.h5", **cfg)
    assert (tmp_path / "points.h5").exists()


@pytest.mark.parametrize(
    "second, what", [([3, 3, 5], "1 duplicated"), ([3], "1 missing"), ([3, 5, 1], "1 not training")]
)
def test_gather_rejects_bad_cover(tmp_path, second, what):
    cfg = _setup(tmp_path)
    shards = [_shard(tmp_path / "1.h5", [0, 2]), _shard(tmp_path / "2.h5", second)]
    with pytest.raises(ValueError, match=what):
        gather_points(shards=shards, faces=tmp_path / "faces.h5", points=tmp_path / "points.h5", **cfg)
    assert not (tmp_path / "points.h5").exists()


def test_train_subset_is_stratified_seeded_and_within_train():
    n = 1000
    labels = np.repeat(np.arange(7), [400, 50, 150, 100, 100, 100, 100])
    faces = Faces(
        images=np.zeros((n, 1, 1, 3), np.uint8),
        labels=labels,
        splits=np.array(["train"] * 900 + ["test"] * 100)[np.random.default_rng(0).permutation(n)],
        sources=np.array([str(i) for i in range(n)]),
        status=np.array(["x"] * n),
    )
    rows = train_rows(faces, "train", 90, seed=1)
    assert len(rows) == 90 and len(set(rows)) == 90 and (faces.splits[rows] == "train").all()
    full = np.bincount(labels[faces.splits == "train"], minlength=7) / 900
    assert np.abs(np.bincount(labels[rows], minlength=7) / 90 - full).max() < 0.02
    assert (train_rows(faces, "train", 90, seed=1) == rows).all() and not (
        train_rows(faces, "train", 90, seed=2) == rows
    ).all()
    assert len(train_rows(faces, "train", None, 1)) == 900


def _job(rule, input, output, params, wildcards, resources=None):
    """The parts of a Snakemake job object the runner reads, built from Snakemake's own Namedlist."""
    from types import SimpleNamespace

    from snakemake.iocontainers import Namedlist

    def named(values):
        flat = [v for value in values.values() for v in (value if isinstance(value, list) else [value])]
        out = Namedlist(flat)
        start = 0
        for name, value in values.items():
            size = len(value) if isinstance(value, list) else 1
            out._set_name(name, start, start + size if isinstance(value, list) else None)
            start += size
        return out

    return SimpleNamespace(
        rule=rule,
        input=named(input),
        output=named(output),
        params=Namedlist(fromdict=params),
        wildcards=Namedlist(fromdict=wildcards),
        resources=Namedlist(fromdict=resources or {}),
    )


def test_a_rules_names_are_its_stages_keywords():
    job = _job(
        "masked_samples",
        {"faces": "f.h5", "points": "p.h5"},
        {"masked": "m.h5", "grid": "g.png"},
        {"mask_size": 9},
        {"ds": "demo", "r": "2", "unused": "x"},
        {"_cores": 2},
    )
    kwargs = stage_arguments(STAGES["masked_samples"], job)
    assert kwargs == {
        "faces": "f.h5",
        "points": "p.h5",
        "masked": "m.h5",
        "grid": "g.png",
        "mask_size": 9,
        "ds": "demo",
        "r": 2,
    }  # r annotated int: converted; wildcards the stage does not name: left out
    lists = _job(
        "gather_points",
        {"shards": ["1.h5", "2.h5"], "faces": "f.h5"},
        {"points": "p.h5"},
        {"train_split": "train", "train_subset": None, "seed": 0},
        {"ds": "demo", "r": "1"},
    )
    assert stage_arguments(STAGES["gather_points"], lists)["shards"] == ["1.h5", "2.h5"]
    typo = _job(
        "masked_samples",
        {"faces": "f.h5", "points": "p.h5"},
        {"masked": "m.h5", "grid": "g.png"},
        {"mask_sise": 9},
        {"ds": "demo", "r": "2"},
    )
    with pytest.raises(TypeError, match="its stage pasm.workflow.search.masked_samples takes no mask_sise"):
        stage_arguments(STAGES["masked_samples"], typo)
    bound = _job(
        "ablation_masked",
        {"faces": "f.h5", "points": "p.h5"},
        {"masked": "m.h5", "grid": "g.png"},
        {"mask_size": 5},
        {"ds": "demo", "variant": "mask_size_5"},
    )
    # r is bound to 1 by STAGES: the ablation rule has no r wildcard
    assert stage_arguments(STAGES["ablation_masked"], bound)["ds"] == "demo"
    with pytest.raises(TypeError, match="ablation_masked: its stage .*masked_samples takes no x"):
        stage_arguments(STAGES["ablation_masked"], _job("ablation_masked", {"x": "f.h5"}, {}, {}, {}))
