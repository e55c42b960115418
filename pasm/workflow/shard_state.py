"""The finished blocks of a point-search shard, kept beside its output while it runs, so that a shard
that is killed (a scheduler's time limit, preemption) continues at its first unfinished block.

The state is one HDF5 file, ``<output stem>.search_state.h5``, not a declared output (Snakemake
deletes those before a rerun). It holds the points table of the shard's first images, whole blocks
only, and the count of finished blocks, and it is replaced atomically after each block (write_table:
a new file renamed over the old one), so a kill at any moment leaves the previous or the next state,
never a torn one; HDF5 files modified in place are not safe against a kill. A reader trusts rows up
to the recorded count only. The state carries the SHA-256 of the shard's input files and settings:
one with another key, or one that cannot be read, is ignored with the reason logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pasm.data.atomic import stale_temporaries
from pasm.data.h5store import POINT_FIELDS, read_table, write_table
from pasm.nn.models import file_sha256

log = logging.getLogger(__name__)

STATE_VERSION = 1
"""Layout of the state file; part of the key, so a state of another layout is never continued."""


@dataclass(frozen=True)
class Finished:
    """What a shard's state says is done: the points table of its first images (POINT_FIELDS), the
    number of whole blocks they make, and the search seconds spent on them."""

    table: dict[str, np.ndarray]
    blocks: int
    seconds: float

    @property
    def images(self) -> int:
        """Images done."""
        return len(self.table["index"]) if self.table else 0


NOTHING_DONE = Finished({}, 0, 0.0)


@dataclass(frozen=True)
class ShardState:
    """Where a shard keeps its finished blocks, and the key (hash of its inputs and settings) that a
    state must carry to be continued."""

    path: Path
    key: str

    def load(self, index: np.ndarray, block: int) -> Finished:
        """The finished blocks of a state that exists, can be read, carries this key and agrees with
        the shard's rows ``index`` and block size ``block``; NOTHING_DONE otherwise, with the reason
        logged (the search then starts at block 0)."""
        if not self.path.exists():
            return NOTHING_DONE
        try:
            table, attrs = read_table(self.path)
        except Exception as exc:  # truncated, not HDF5, attributes not JSON: start over, say why
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            log.warning(
                "ignoring unreadable search state %s (%s: %s); starting at block 0",
                self.path,
                type(exc).__name__,
                first,
            )
            return NOTHING_DONE
        if attrs.get("key") != self.key:
            log.info(
                "ignoring search state %s: it belongs to other inputs or parameters; starting at block 0",
                self.path,
            )
            return NOTHING_DONE
        problem = _inconsistency(table, attrs, index, block)
        if problem:
            log.warning("ignoring search state %s: %s; starting at block 0", self.path, problem)
            return NOTHING_DONE
        blocks = int(attrs["blocks_done"])
        rows = min(blocks * block, len(index))
        return Finished({k: table[k][:rows] for k in POINT_FIELDS}, blocks, float(attrs["seconds"]))

    def save(self, table: dict[str, np.ndarray], blocks: int, block: int, seconds: float) -> None:
        """Replace the state by ``table`` (the first ``blocks`` blocks of ``block`` images), atomically;
        the count of finished blocks is written after the rows (write_table sets attributes last)."""
        write_table(
            self.path,
            {k: table[k] for k in POINT_FIELDS},
            {"key": self.key, "blocks_done": int(blocks), "block": int(block), "seconds": float(seconds)},
        )

    def remove(self) -> None:
        """Delete the state, and the temporary file of a state write that a kill interrupted."""
        for path in [self.path, *stale_temporaries(self.path)]:
            path.unlink(missing_ok=True)


def _inconsistency(table: dict[str, Any], attrs: dict[str, Any], index: np.ndarray, block: int) -> str:
    """Why a state with the right key still cannot be continued ('' when it can)."""
    blocks = attrs.get("blocks_done")
    if (
        not isinstance(blocks, int)
        or attrs.get("block") != block
        or not isinstance(attrs.get("seconds"), float)
    ):
        return f"its attributes are not those of a state of blocks of {block} images"
    if sorted(table) != sorted(POINT_FIELDS):
        return f"it holds the columns {sorted(table)}, not {sorted(POINT_FIELDS)}"
    n_blocks = max(-(-len(index) // block), 1)
    rows = min(blocks * block, len(index))
    if not 0 <= blocks <= n_blocks or any(len(v) < rows for v in table.values()):
        return f"it records {blocks} finished blocks of {n_blocks}, with fewer rows than that"
    if not np.array_equal(table["index"][:rows], index[:rows]):
        return "its rows are not the shard's first rows"
    return ""


def shard_state(
    out_points: str | Path,
    inputs: Sequence[str | Path],
    settings: dict[str, Any],
    stage: str = "search_points",
) -> ShardState:
    """The state of the job that writes ``out_points`` (a search shard, or another ``stage`` that
    searches in blocks): beside it, keyed by the SHA-256 of its input files and settings (and the
    state's layout)."""
    blob = json.dumps(
        {
            "stage": stage,
            "version": STATE_VERSION,
            "inputs": [file_sha256(p) for p in inputs],
            "settings": settings,
        },
        sort_keys=True,
        default=str,
    )
    out = Path(out_points)
    return ShardState(out.with_name(f"{out.stem}.search_state.h5"), hashlib.sha256(blob.encode()).hexdigest())
