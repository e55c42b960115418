"""The common output of every data set reader: labelled records, evaluation subsets, counted skips.

Readers list what is on disk and check labels; they never decode images (pasm/faces.py does).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

log = logging.getLogger(__name__)

MAX_MISSING_FRACTION = 0.05
"""More listed images than this fraction missing means a wrong root or images option, not a few gaps."""


@dataclass(frozen=True)
class Record:
    """One labelled face: an image file to decode, or pixels the reader already holds."""

    source: str
    split: str
    label: int
    path: Path | None = None
    pixels: np.ndarray | None = field(default=None, compare=False, repr=False)
    subject: str = ""
    aligned: bool = True
    box: tuple[float, float, float, float] | None = None
    """Face box (x, y, width, height) in image pixels given by the data set: cropped, no detector run."""
    points: tuple[tuple[float, float], ...] | None = None
    """Five landmarks given by the data set (eye at the lower x, eye at the higher x, nose tip, mouth
    corner at the lower x, at the higher x; MTCNN's order), in image pixels: aligned, no detector run."""
    values: tuple[tuple[str, float], ...] = ()
    """Continuous annotations kept as faces.h5 columns (AffectNet's valence and arousal)."""

    def __post_init__(self) -> None:
        if self.path is None and self.pixels is None:
            raise ValueError(f"{self.source}: a record needs an image path or pixels")


@dataclass
class ReaderOutput:
    """Records of one data set plus named evaluation subsets, counted skips, the label mapping used,
    and the files found where images belong but not read (not an image extension; counted by faces)."""

    records: list[Record]
    subsets: dict[str, list[int]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    label_map: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


def subset_masks(output: ReaderOutput, kept_sources: Sequence[str]) -> dict[str, np.ndarray]:
    """Boolean row masks of the reader's subsets over the rows actually kept (e.g. faces.h5 sources).

    Decoding may drop records, so subsets are re-keyed by each record's unique source string.
    """
    row_of = {src: row for row, src in enumerate(kept_sources)}
    masks = {}
    for name, indices in output.subsets.items():
        mask = np.zeros(len(kept_sources), dtype=bool)
        rows = [row_of[s] for s in (output.records[i].source for i in indices) if s in row_of]
        mask[rows] = True
        masks[name] = mask
    return masks


def missing_image_note(path: Path, listed_in: str) -> str:
    """The counted-skip message for a listed image that is not on disk."""
    return f"{path}: image not found (listed in {listed_in})"


def check_missing(skipped: list[str], total: int, what: str, hint: str) -> None:
    """Log counted skips; raise FileNotFoundError when too many listed images are missing."""
    if not skipped:
        return
    log.warning(
        "%s: %d of %d listed images not found, skipped (first: %s)", what, len(skipped), total, skipped[0]
    )
    if total and len(skipped) > MAX_MISSING_FRACTION * total:
        raise FileNotFoundError(
            f"{what}: {len(skipped)} of {total} listed images are missing "
            f"(more than {MAX_MISSING_FRACTION:.0%}); {hint}. First missing: {skipped[0]}"
        )


def data_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, stripped text) of the non-blank lines of a UTF-8 text file."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
            except UnicodeDecodeError:
                raise ValueError(
                    f"{path}:{number}: cannot parse: not UTF-8 text (is this the right file?)"
                ) from None
            if text:
                yield number, text


def require_dir(root: str | Path, what: str) -> Path:
    """Return root as a Path, or raise FileNotFoundError naming it when it is not a directory."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{what} root {root} does not exist or is not a directory")
    return root
