"""No stage needs memory that grows with the data set: each stage that reads a whole split runs at N
and 4N synthetic faces, alone in a fresh process (benchmarks/memory.py's way), and its peak resident
memory may grow by at most BOUND of what holding the 3N extra faces once would take.

Few faces of 224 px in blocks of 16 rows, so both sizes hold many full blocks of every blocked stage,
and glibc's allocator pinned in the child, so the peak does not wander with allocation order.
docs/operations.md ("The memory test") gives the settings' reasons and what the test measured."""

from __future__ import annotations

import argparse
import importlib.util

import pytest
from conftest import REPO

pytestmark = pytest.mark.workflow  # runs the pipeline's stages: make test-fast leaves it out

N, SIZE = 224, 224
FACTOR = 4
SPLITS = {"train": 0.5, "val": 0.25, "test": 0.25}
BLOCK = 16
# gather runs too (masking needs its points) and is checked with the rest
STAGES = ["faces", "pretrain", "search_de", "search_ranked", "masking", "finetune", "evaluate"]
BOUND = 0.25
"""Allowed growth, as a share of the 3N extra faces' bytes: half of what holding the smaller sets a
stage reads (the training split, or validation and test: half the faces each) would add."""
PREDICT_BATCH = 50  # pasm.nn.inference.predict_logits' batch: evaluation and validation read this many


def _benchmark():
    spec = importlib.util.spec_from_file_location("memory_benchmark", REPO / "benchmarks" / "memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peak_memory_of_the_stages_does_not_grow_with_the_data_set(tmp_path):
    bench = _benchmark()
    args = argparse.Namespace(
        width=4,
        batch_size=BLOCK,
        population=4,
        generations=1,
        top_k=8,
        precision="float32",
        threads=2,
        search_batch=BLOCK,
    )
    patch = {where: BLOCK for where in bench.BLOCKS}  # SEARCH_BLOCK, MASK_BLOCK, IMAGE_BUFFER
    per_split = {split: 7 * max(1, round(N * share / 7)) for split, share in SPLITS.items()}
    assert min(per_split["val"], per_split["test"]) > PREDICT_BATCH, per_split  # see the docstring
    peaks = {}
    for n in (N, FACTOR * N):
        peaks[n] = bench.run_stages(
            tmp_path / f"n{n}",
            n,
            SIZE,
            args,
            STAGES,
            malloc=True,
            patch=patch,
            pool=70,  # distinct faces: rendered once, shared by both sets
            splits=SPLITS,
            pool_cache=tmp_path / "pool",
        )
    small, large = peaks[N], peaks[FACTOR * N]
    assert set(small) == set(large) >= set(STAGES)
    extra_mb = (FACTOR - 1) * N * SIZE * SIZE * 3 / 2**20  # the extra faces, as uint8, held once
    growth = {stage: round(large[stage]["peak_mb"] - small[stage]["peak_mb"], 1) for stage in small}
    too_much = {stage: g for stage, g in growth.items() if g > BOUND * extra_mb}
    assert not too_much, (
        f"peak memory grew with the data set (MiB; bound {BOUND * extra_mb:.0f}, the {FACTOR - 1}N extra "
        f"faces = {extra_mb:.0f} MiB): {too_much}; all growth {growth}"
    )
