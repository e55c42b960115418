"""No stage needs memory that grows with the data set: every stage runs at N and 4N synthetic faces,
each alone in a fresh process (benchmarks/memory.py's way), and its peak resident memory may grow
by at most half of what holding the extra faces once would take."""

from __future__ import annotations

import argparse
import importlib.util

import pytest
from conftest import REPO

pytestmark = pytest.mark.workflow  # runs Snakemake or the whole pipeline: make test-fast leaves it out

N, SIZE = 800, 128
"""640 training faces in the smaller set: more than one block of every blocked stage (masking 512)."""
STAGES = ["faces", "pretrain", "search_de", "search_seeded", "masking", "finetune", "evaluate"]


def _benchmark():
    spec = importlib.util.spec_from_file_location("memory_benchmark", REPO / "benchmarks" / "memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peak_memory_of_every_stage_does_not_grow_with_the_data_set(tmp_path):
    bench = _benchmark()
    # A narrow network and small batches: their buffers, which settle after some batches whatever the
    # data set's size, stay small next to the 3N extra faces the test looks for.
    args = argparse.Namespace(
        width=4, batch_size=16, population=4, generations=1, top_k=8, precision="float32", threads=2
    )
    small = bench.run_stages(tmp_path / "n", N, SIZE, args, STAGES)
    large = bench.run_stages(tmp_path / "4n", 4 * N, SIZE, args, STAGES)
    extra_mb = 3 * N * SIZE * SIZE * 3 / 2**20  # the 3N extra faces, as uint8, held once
    assert set(small) == set(large) >= set(STAGES)
    growth = {stage: large[stage]["peak_mb"] - small[stage]["peak_mb"] for stage in small}
    too_much = {stage: round(g) for stage, g in growth.items() if g > 0.5 * extra_mb}
    assert not too_much, (
        f"peak memory grew with the data set (MiB, 3N extra faces = {extra_mb:.0f} MiB): "
        f"{too_much}; all growth {growth}"
    )
