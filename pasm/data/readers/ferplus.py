"""FER+ (Microsoft's relabelling of FER2013): the ten crowd votes per face of fer2013new.csv ->
majority labels.

Header `Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF`;
data row i relabels data row i of fer2013.csv (blank lines are not rows in either file). Labels follow
Microsoft's reference "majority" mode: a single vote for an emotion is an outlier and counts 0, then
the emotion with the most votes is the label only if it holds more than half of the remaining votes.
Dropped and counted: rows without such a majority, whose majority is unknown or NF (not a face), whose
Image name is empty (FER+ excluded the image), and contempt under contempt="drop" (else mapped into
the class named). The ten raw vote counts travel as Record.values (ferplus_neutral ... ferplus_NF).

Bad input (ValueError): another row count than fer2013.csv (both files and counts named); a Usage that
differs from fer2013.csv's on the same row (both file:line named); a vote that is not a non-negative
integer (file:line); a missing column (file and expected header).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pasm.data.labels import CLASSES, canonical_index
from pasm.data.readers.tables import csv_table, data_rows, require_columns

log = logging.getLogger(__name__)

VOTE_COLUMNS = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
)
COLUMNS = ("Usage", "Image name", *VOTE_COLUMNS)
VALUE_NAMES = tuple(f"ferplus_{name}" for name in VOTE_COLUMNS)
"""Record.values names of the raw vote counts, in VOTE_COLUMNS order."""
CONTEMPT = VOTE_COLUMNS.index("contempt")
NOT_EMOTIONS = {VOTE_COLUMNS.index("unknown"): "unknown", VOTE_COLUMNS.index("NF"): "NF (not a face)"}
NO_MAJORITY = -1
METHOD = "single votes removed, then the top emotion needs more than half of the remaining votes"


@dataclass(frozen=True)
class FerPlusVotes:
    """The data rows of fer2013new.csv: Usage, image name, raw votes (N, 10) and file line of each."""

    path: Path
    usage: np.ndarray
    names: np.ndarray
    votes: np.ndarray
    lines: np.ndarray


def _vote_counts(path: Path, table: pd.DataFrame, lines: np.ndarray) -> np.ndarray:
    """The vote columns as (N, 10) int64; ValueError naming the first field that is not a non-negative
    integer."""
    votes = np.zeros((len(table), len(VOTE_COLUMNS)), dtype=np.int64)
    for j, name in enumerate(VOTE_COLUMNS):
        text = table[name].str.strip()
        bad = ~text.str.fullmatch(r"\d+").to_numpy(dtype=bool)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{path}:{lines[i]}: cannot parse {name} vote {text.iloc[i]!r} "
                "(expected a non-negative integer)"
            )
        votes[:, j] = text.astype(np.int64).to_numpy()
    return votes


def read_votes(path: str | Path) -> FerPlusVotes:
    """Read fer2013new.csv (Microsoft's FER+ vote file), checking its header and every vote."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FER+ vote file {path} not found (Microsoft's fer2013new.csv)")
    table = csv_table(path, COLUMNS, "FER+'s fer2013new.csv")
    require_columns(path, table, COLUMNS)
    table, lines = data_rows(table, COLUMNS)
    usage = table["Usage"].str.strip().to_numpy(dtype=object)
    names = table["Image name"].str.strip().to_numpy(dtype=object)
    return FerPlusVotes(path, usage, names, _vote_counts(path, table, lines), lines)


def majority(votes: np.ndarray) -> np.ndarray:
    """Index into VOTE_COLUMNS of each row's majority (Microsoft's "majority" mode), or NO_MAJORITY."""
    kept = np.where(votes == 1, 0, votes)
    top = kept.max(axis=1)
    winner = kept.argmax(axis=1)
    return np.where(2 * top > kept.sum(axis=1), winner, NO_MAJORITY)


def check_pairing(fer_path: Path, fer_lines: np.ndarray, fer_usage: np.ndarray, votes: FerPlusVotes) -> None:
    """ValueError unless the vote file has one row per fer2013.csv data row, with the same Usage on each."""
    if len(votes.lines) != len(fer_lines):
        raise ValueError(
            f"{votes.path} has {len(votes.lines)} data rows but {fer_path} has {len(fer_lines)}; "
            "FER+ labels row i of fer2013.csv with its row i, so both must be complete copies"
        )
    differ = np.flatnonzero(np.asarray(fer_usage, dtype=object) != votes.usage)
    if differ.size:
        i = int(differ[0])
        raise ValueError(
            f"{fer_path}:{fer_lines[i]}: Usage {fer_usage[i]!r} differs from "
            f"{votes.path}:{votes.lines[i]}: Usage "
            f"{votes.usage[i]!r}; the two files' rows do not pair (a different or reordered copy?)"
        )


def _drop_reason(name: str, winner: int, target: int | None) -> tuple[str, str] | None:
    """(kind, reason) when a row gets no FER+ label, else None."""
    if not name:
        return "empty Image name", "FER+ excluded the image (empty Image name)"
    if winner == NO_MAJORITY:
        return "no majority", "no FER+ majority"
    if winner in NOT_EMOTIONS:
        return NOT_EMOTIONS[winner], f"FER+ majority is {NOT_EMOTIONS[winner]}"
    if winner == CONTEMPT and target is None:
        return "contempt", "FER+ majority is contempt, dropped (contempt='drop')"
    return None


def _canonical(winner: int, target: int | None) -> int:
    """Canonical index of a FER+ emotion column (contempt goes to its target)."""
    return target if winner == CONTEMPT else canonical_index(VOTE_COLUMNS[winner])


@dataclass(frozen=True)
class FerPlusLabels:
    """Per fer2013.csv row: canonical label (or -1), whether it is kept, drop messages and counts."""

    labels: np.ndarray
    kept: np.ndarray
    dropped: dict[int, str]
    kinds: Counter


def ferplus_labels(
    fer_path: Path, fer_lines: np.ndarray, votes: FerPlusVotes, target: int | None
) -> FerPlusLabels:
    """Majority labels of the paired rows; drops are "fer2013.csv:line: reason (fer2013new.csv:line)"."""
    winners = majority(votes.votes)
    labels = np.full(len(winners), -1, dtype=np.int64)
    dropped: dict[int, str] = {}
    kinds: Counter = Counter()
    for i, winner in enumerate(winners.tolist()):
        drop = _drop_reason(votes.names[i], winner, target)
        if drop is None:
            labels[i] = _canonical(winner, target)
            continue
        kinds[drop[0]] += 1
        dropped[i] = f"{fer_path}:{fer_lines[i]}: {drop[1]} ({votes.path}:{votes.lines[i]})"
    if kinds:
        log.info(
            "FER+ %s: %d rows without a label: %s",
            votes.path,
            len(dropped),
            ", ".join(f"{kind} {n}" for kind, n in kinds.items()),
        )
    return FerPlusLabels(labels, labels >= 0, dropped, kinds)


def vote_values(votes: np.ndarray) -> tuple[tuple[str, float], ...]:
    """One row's raw vote counts as Record.values."""
    return tuple(zip(VALUE_NAMES, map(float, votes)))


def ferplus_label_map(votes_path: Path, target: int | None, kinds: Counter) -> dict[str, str]:
    """Documentation of the FER+ column -> canonical class mapping, with what was dropped."""
    mapping = {"labels": f"FER+ majority votes of {votes_path} ({METHOD})"}
    mapping.update({name: CLASSES[canonical_index(name)] for name in VOTE_COLUMNS[:CONTEMPT]})
    mapping["contempt"] = CLASSES[target] if target is not None else f"dropped ({kinds['contempt']} images)"
    for kind in ("unknown", "NF (not a face)", "no majority", "empty Image name"):
        mapping[kind.split(" (")[0]] = f"dropped ({kinds[kind]} images)"
    return mapping
