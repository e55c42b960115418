"""A search shard that is killed continues at its first unfinished block: a real Snakemake run is
SIGKILLed while a shard is between blocks, restarted the way docs/operations.md says, and must search
only the remaining blocks and end with the points of an uninterrupted run. In-process checks: the
block size does not change the points, and a state that is unreadable, damaged or another job's is
ignored with the reason logged."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import REPO, run_snakemake, write_config
from test_interrupt import KILL, R1, _copy_without, _h5, _jobs, _kill, _leftovers, _same_h5, _wait_for

from pasm.data.h5store import Faces, write_faces
from pasm.data.labels import CLASSES
from pasm.nn.models import IMAGENET_MEAN, IMAGENET_STD, build_model, save_model
from pasm.workflow import shard_state as shard_state_module
from pasm.workflow.search import search_points
from pasm.workflow.shard_state import ShardState

pytestmark = pytest.mark.workflow  # runs Snakemake: make test-fast leaves it out

# ---------------------------------------------------------------------------------------------
# In process: one shard of a small random set, in blocks of BLOCK.

N_TRAIN, BLOCK = 40, 7  # six blocks, the last one short
N_BLOCKS = -(-N_TRAIN // BLOCK)
SEARCH = {"strategy": "de", "population": 6, "generations": 2, "batch_size": 0, "block": BLOCK}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    """faces.h5 (random 16 px faces, N_TRAIN of them for training) and a compact network with batch
    norms (folded by the search) of random weights."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    n = N_TRAIN + 5
    write_faces(
        root / "faces.h5",
        Faces(
            images=rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
            labels=rng.integers(0, len(CLASSES), n),
            splits=np.array(["train"] * N_TRAIN + ["test"] * 5),
            sources=np.array([f"{i}.png" for i in range(n)]),
            status=np.array(["ok"] * n),
        ),
    )
    torch.manual_seed(0)
    net = build_model("compact", len(CLASSES), 4)
    for m in net.modules():  # batch norms that do something, so folding them matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    meta = {
        "arch": "compact",
        "width": 4,
        "classes": list(CLASSES),
        "image_size": 16,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }
    save_model(root / "model.pt", net, meta)
    return {"faces": str(root / "faces.h5"), "model": str(root / "model.pt")}


def _search(inputs: dict[str, str], points: Path, search: dict | None = None) -> None:
    search_points(
        **inputs,
        points=str(points),
        scatteritem="1-of-1",
        r=1,
        search=search or SEARCH,
        train_split="train",
        train_subset=None,
        seed=0,
        progress=False,
    )


def _state_of(points: Path) -> Path:
    return points.with_name(f"{points.stem}.search_state.h5")


def _searched_blocks(messages: list[str]) -> list[int]:
    return [int(m.group(1)) for s in messages if (m := re.match(r"searched block (\d+) of", s))]


@pytest.fixture(scope="module")
def uninterrupted(inputs, tmp_path_factory) -> Path:
    points = tmp_path_factory.mktemp("uninterrupted") / "1-of-1.h5"
    _search(inputs, points)
    return points


@pytest.mark.parametrize("strategy", ["de", "seeded"])
def test_the_block_size_does_not_change_the_points(inputs, tmp_path, strategy):
    found = {}
    for block in (BLOCK, 16, N_TRAIN, 500):
        out = tmp_path / f"{block}.h5"
        _search(
            inputs, out, {**SEARCH, "strategy": strategy, "top_k": 5, "refine_population": 4, "block": block}
        )
        found[block] = _h5(out)[0]
        assert not _state_of(out).exists()
    for block, table in found.items():  # as test_point_search.test_independent_of_batch_size: the
        # probabilities up to rounding, since a row's forward may differ in the last bit with its batch
        for k, v in table.items():
            assert v.dtype == found[500][k].dtype, (block, k)
            if k.startswith("prob_"):
                np.testing.assert_allclose(v, found[500][k], atol=1e-6, err_msg=f"block {block}: {k}")
            else:
                np.testing.assert_array_equal(v, found[500][k], err_msg=f"block {block}: {k}")


class Killed(Exception):
    """Stands for a kill right after a state was written."""


def test_a_stopped_shard_resumes_at_its_first_unfinished_block(
    inputs, uninterrupted, tmp_path, monkeypatch, caplog
):
    points = tmp_path / "1-of-1.h5"
    save = ShardState.save

    def save_then_stop(self, table, blocks, block, seconds):
        save(self, table, blocks, block, seconds)
        if blocks == 2:
            raise Killed

    monkeypatch.setattr(ShardState, "save", save_then_stop)
    with pytest.raises(Killed):
        _search(inputs, points)
    monkeypatch.undo()
    assert not points.exists() and _state_of(points).exists()

    caplog.set_level(logging.INFO)
    caplog.clear()  # only the rerun's records (an earlier test may have left the root logger at INFO)
    _search(inputs, points)
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        m.startswith(f"resuming shard 1/1 at block 2 of {N_BLOCKS} ({2 * BLOCK} images done)")
        for m in messages
    ), messages
    assert _searched_blocks(messages) == list(range(2, N_BLOCKS))
    _same_h5(points, uninterrupted, timing_attrs=("seconds",))
    assert not _state_of(points).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["1-of-1.h5"]


def _garbage(path: Path, _: ShardState) -> None:
    path.write_bytes(b"not a search state, " * 50)


def _truncated(path: Path, good: ShardState) -> None:
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


def _other_key(path: Path, good: ShardState) -> None:
    table, attrs = _h5(path)
    ShardState(path, "another job's key").save(table, attrs["blocks_done"], attrs["block"], attrs["seconds"])


def _other_rows(path: Path, good: ShardState) -> None:
    table, attrs = _h5(path)
    table["index"] = table["index"] + 1
    good.save(table, attrs["blocks_done"], attrs["block"], attrs["seconds"])


def _count_beyond_rows(path: Path, good: ShardState) -> None:
    table, attrs = _h5(path)
    good.save(table, attrs["blocks_done"] + 1, attrs["block"], attrs["seconds"])


@pytest.mark.parametrize(
    "spoil, reason",
    [
        (_garbage, r"ignoring unreadable search state \S+ \(\w+: .*\); starting at block 0"),
        (_truncated, r"ignoring unreadable search state \S+ \(\w+: .*\); starting at block 0"),
        (
            _other_key,
            r"ignoring search state \S+: it belongs to other inputs or parameters; starting at block 0",
        ),
        (
            _other_rows,
            r"ignoring search state \S+: its rows are not the shard's first rows; starting at block 0",
        ),
        (
            _count_beyond_rows,
            r"ignoring search state \S+: it records 3 finished blocks .*; starting at block 0",
        ),
    ],
    ids=["garbage", "truncated", "other_key", "other_rows", "count_beyond_rows"],
)
def test_an_unusable_state_is_ignored_with_the_reason(
    inputs, uninterrupted, tmp_path, monkeypatch, caplog, spoil, reason
):
    points = tmp_path / "1-of-1.h5"
    captured: list[ShardState] = []
    save = ShardState.save

    def save_then_stop(self, table, blocks, block, seconds):
        save(self, table, blocks, block, seconds)
        captured.append(self)
        if blocks == 2:
            raise Killed

    monkeypatch.setattr(ShardState, "save", save_then_stop)
    with pytest.raises(Killed):
        _search(inputs, points)
    monkeypatch.undo()
    spoil(_state_of(points), captured[-1])

    caplog.set_level(logging.INFO)
    caplog.clear()  # only the rerun's records (an earlier test may have left the root logger at INFO)
    _search(inputs, points)
    messages = [r.getMessage() for r in caplog.records]
    assert any(re.fullmatch(reason, m) for m in messages), messages
    assert not any(m.startswith("resuming") for m in messages)
    assert _searched_blocks(messages) == list(range(N_BLOCKS))
    _same_h5(points, uninterrupted, timing_attrs=("seconds",))
    assert not _state_of(points).exists()


def test_a_finished_state_is_only_written_out(inputs, uninterrupted, tmp_path, monkeypatch, caplog):
    """Killed after the last block, before the output: the rerun searches nothing."""
    points = tmp_path / "1-of-1.h5"
    monkeypatch.setattr(shard_state_module, "write_table", _write_then_stop_at(N_BLOCKS))
    with pytest.raises(Killed):
        _search(inputs, points)
    monkeypatch.undo()
    caplog.set_level(logging.INFO)
    caplog.clear()  # only the rerun's records (an earlier test may have left the root logger at INFO)
    _search(inputs, points)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"resuming shard 1/1 at block {N_BLOCKS} of {N_BLOCKS}") for m in messages)
    assert _searched_blocks(messages) == []
    _same_h5(points, uninterrupted, timing_attrs=("seconds",))


def _write_then_stop_at(blocks: int):
    write = shard_state_module.write_table

    def write_then_stop(path, table, attrs=None, images=None):
        write(path, table, attrs, images)
        if attrs["blocks_done"] == blocks:
            raise Killed

    return write_then_stop


# ---------------------------------------------------------------------------------------------
# A real Snakemake run, killed while a shard is between blocks.

RESUME = {
    **KILL,
    "method": {
        "rounds": 1,
        "mask_size": 5,
        "shards": 2,
        # 42 training images per shard: 7 blocks of 6, each long enough to be killed after
        "search": {"population": 30, "generations": 8, "block": 6},
    },
}
TARGET = f"{R1}/points.h5"
SHARDS = [f"{R1}/points/{i}-of-2.h5" for i in (1, 2)]
M = 7


def _run_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }


def _start(wd: Path, out: Path) -> subprocess.Popen:
    """The run to be killed, in its own session so that killpg reaches its job processes too."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile")]
    cmd += ["-d", str(wd), "--cores", "1", TARGET]
    return subprocess.Popen(
        cmd, stdout=out.open("w"), stderr=subprocess.STDOUT, env=_run_env(), start_new_session=True
    )


def _blocks_done(state: Path) -> int | None:
    """The finished blocks a state records, None while there is none (or it is being replaced)."""
    try:
        with h5py.File(state, "r") as f:
            return int(f.attrs["blocks_done"])
    except (OSError, KeyError):
        return None


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One uninterrupted run of the same config."""
    wd = tmp_path_factory.mktemp("reference")
    write_config(wd, RESUME)
    run_snakemake(wd, "--cores", "2", TARGET)
    return wd


def test_killed_between_blocks_resumes_at_the_first_unfinished_block(reference, tmp_path):
    wd = _copy_without(reference, tmp_path, ["points", "points.h5"])
    out = tmp_path / "killed_run.log"
    proc = _start(wd, out)
    states = {s: wd / Path(s).with_name(f"{Path(s).stem}.search_state.h5") for s in SHARDS}

    def between_blocks():
        for shard, state in states.items():
            k = _blocks_done(state)
            if k is not None and 1 <= k < M:
                return shard
        return None

    shard = _wait_for(proc, out, between_blocks)
    _kill(proc)
    state = states[shard]
    k = _blocks_done(state)  # what the restart finds: at least as far as seen, never all
    assert k is not None and 1 <= k < M and not (wd / shard).exists()
    kept, _ = _h5(state)
    ref_shard, _ = _h5(reference / shard)
    for column, values in kept.items():  # whole blocks, the uninterrupted run's rows
        assert len(values) == 6 * k and np.array_equal(values, ref_shard[column][: 6 * k]), column

    run_snakemake(wd, "--unlock", "--cores", "1", TARGET)
    proc = run_snakemake(wd, "--cores", "1", TARGET, "--rerun-incomplete")
    i = int(Path(shard).stem.split("-")[0])
    log = (wd / f"results/tiny/logs/round1/search_{Path(shard).stem}.log").read_text()
    assert re.search(rf"resuming shard {i}/2 at block {k} of {M} \({6 * k} images done\)", log), log
    searched = [int(b) for b in re.findall(r"searched block (\d+) of", log)]
    assert searched == list(range(k, M))
    assert shard in {o for rule, o in _jobs(proc.stdout + proc.stderr) if rule == "search_points"}

    for s in SHARDS:
        _same_h5(wd / s, reference / s, timing_attrs=("seconds",))
    _same_h5(wd / TARGET, reference / TARGET, timing_attrs=("search_seconds",))
    assert not any(p.exists() for p in states.values())
    assert _leftovers(wd) == []
    print(
        f"\nkilled {Path(shard).name} with {k} of {M} blocks recorded; the restart resumed at block {k}, "
        f"searched blocks {searched}; points equal to the uninterrupted run's"
    )
