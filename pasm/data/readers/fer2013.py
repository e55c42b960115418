"""FER2013: the ICML 2013 challenge CSV (plain or .gz) or the popular train/test image-folder copy.

CSV: header `emotion,pixels,Usage`; 48x48 grey pixels as 2,304 space-separated values; emotion
ids are already canonical (0 Angry ... 6 Neutral). Usage Training -> split "train", PublicTest and
PrivateTest keep their names; any of them may be absent. Sources are "<csv path>:<line>".
Folder copy: root/<train|test>/<angry|disgust|...|neutral>/*.jpg -> splits "train"/"test"
(other split folders are read under their own names). All faces are already aligned.
FER+ (ferplus= Microsoft's fer2013new.csv, CSV only): its majority votes replace the labels row for
row and its raw votes become Record.values; rows without a FER+ label are counted skips
(pasm/data/readers/ferplus.py); contempt= drops FER+'s contempt or maps it into a class.

Bad input: missing file or folder (or a folder with neither train/ nor test/) -> FileNotFoundError;
an empty file, a truncated or damaged .gz, a .gz name on a plain file, a row with more fields than
the header or text that is not UTF-8 -> ValueError naming the file (and the line where pandas gives one);
a missing column -> ValueError naming the file and the expected header; an emotion that is not an
integer or a Usage that is empty -> ValueError "file:line: cannot parse ..."; an emotion outside
0-6 or an unknown Usage -> ValueError naming file:line and the value; a row whose pixel count is
not 2,304 or with values outside 0-255 -> counted skip "file:line: reason". Blank lines are ignored.
ferplus with the folder copy -> ValueError (the votes pair with the CSV's rows).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pasm.data.labels import CLASSES, NUM_CLASSES, contempt_target
from pasm.data.readers import ferplus as fp
from pasm.data.readers.folder import read_folder_dataset
from pasm.data.readers.records import ReaderOutput, Record
from pasm.data.readers.tables import csv_table, data_rows, require_columns

log = logging.getLogger(__name__)

COLUMNS = ("emotion", "pixels", "Usage")
USAGE_SPLITS = {"Training": "train", "PublicTest": "PublicTest", "PrivateTest": "PrivateTest"}
SIDE = 48
NUM_PIXELS = SIDE * SIDE


def _read_table(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The data rows (all columns as strings, blank lines dropped) and the file line of each."""
    table = csv_table(path, COLUMNS, "the FER2013 CSV")
    require_columns(path, table, COLUMNS)
    return data_rows(table, COLUMNS)


def _labels(path: Path, emotion: pd.Series, lines: np.ndarray) -> np.ndarray:
    """Emotion ids as int64; ValueError naming the first bad line."""
    values = pd.to_numeric(emotion.str.strip(), errors="coerce")
    bad = values.isna().to_numpy() | (values.fillna(0) % 1 != 0).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{path}:{lines[i]}: cannot parse emotion {emotion.iloc[i]!r} (expected an integer 0-6)"
        )
    labels = values.to_numpy(dtype=np.int64)
    outside = (labels < 0) | (labels >= NUM_CLASSES)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"{path}:{lines[i]}: unknown emotion value {labels[i]} (expected 0-6 = {', '.join(CLASSES)})"
        )
    return labels


def _splits(path: Path, usage: pd.Series, lines: np.ndarray) -> np.ndarray:
    """Usage values mapped to split names; ValueError naming the first bad line."""
    usage = usage.str.strip()
    splits = usage.map(USAGE_SPLITS)
    bad = splits.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        value = usage.iloc[i]
        reason = "cannot parse empty Usage" if value == "" else f"unknown Usage value {value!r}"
        raise ValueError(f"{path}:{lines[i]}: {reason} (expected one of {', '.join(USAGE_SPLITS)})")
    return splits.to_numpy(dtype=object)


def _exact_row(text: str) -> tuple[np.ndarray | None, str]:
    """Parse one pixel string; return the row, or None and the reason it is bad."""
    try:
        row = np.fromstring(text, dtype=np.int64, sep=" ")
    except (ValueError, DeprecationWarning):
        return None, "cannot parse pixels (non-integer value)"
    if row.size != NUM_PIXELS:
        return None, f"{row.size} pixel values, expected {NUM_PIXELS}"
    if row.min() < 0 or row.max() > 255:
        return None, f"pixel values outside 0-255 (min {row.min()}, max {row.max()})"
    return row, ""


def _pixels(path: Path, pixels: list[str], lines: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Parse each row's pixel string (one C-level parse) into (N, 48, 48) uint8; bad rows are counted
    skips."""
    out = np.zeros((len(pixels), NUM_PIXELS), dtype=np.uint8)
    ok = np.ones(len(pixels), dtype=bool)
    skipped: list[str] = []
    for i, text in enumerate(pixels):
        row, reason = _exact_row(text)
        if row is None:
            ok[i] = False
            skipped.append(f"{path}:{lines[i]}: {reason}")
        else:
            out[i] = row
    return out.reshape(-1, SIDE, SIDE), ok, skipped


def _label_map(votes: Path | None, target: int | None, kinds: dict[str, int]) -> dict[str, str]:
    """Documentation of the labels used (FER2013's emotion ids, or FER+'s majority votes) and the Usage
    splits."""
    if votes is None:
        label_map = {f"{i} ({name.capitalize()})": name for i, name in enumerate(CLASSES)}
    else:
        label_map = fp.ferplus_label_map(votes, target, kinds)
    label_map.update({f"Usage {usage}": f"split {split}" for usage, split in USAGE_SPLITS.items()})
    return label_map


def _ferplus(
    path: Path, table: pd.DataFrame, lines: np.ndarray, ferplus: Path, target: int | None
) -> tuple[fp.FerPlusLabels, fp.FerPlusVotes]:
    """FER+ majority labels of the CSV's rows and the votes, after checking that the vote file pairs
    with them."""
    votes = fp.read_votes(ferplus)
    fp.check_pairing(path, lines, table["Usage"].str.strip().to_numpy(dtype=object), votes)
    return fp.ferplus_labels(path, lines, votes, target), votes


def _ferplus_output(
    path: Path,
    lines: np.ndarray,
    splits: np.ndarray,
    images: np.ndarray,
    ok: np.ndarray,
    pixel_skips: list[str],
    relabelled: tuple[fp.FerPlusLabels, fp.FerPlusVotes],
    target: int | None,
) -> ReaderOutput:
    """Records of the rows with good pixels and a FER+ label (raw votes as values); skips in line order."""
    result, votes = relabelled
    records = [
        Record(
            f"{path}:{lines[i]}",
            splits[i],
            int(result.labels[i]),
            pixels=images[i],
            values=fp.vote_values(votes.votes[i]),
        )
        for i in np.flatnonzero(ok & result.kept)
    ]
    by_row = dict(zip(np.flatnonzero(~ok).tolist(), pixel_skips))
    for row, message in result.dropped.items():
        by_row.setdefault(row, message)
    skipped = [by_row[row] for row in sorted(by_row)]
    return ReaderOutput(
        records=records, skipped=skipped, label_map=_label_map(votes.path, target, result.kinds)
    )


def _read_csv(path: Path, ferplus: Path | None = None, target: int | None = None) -> ReaderOutput:
    """Read the challenge CSV: vectorised label and split checks, one C-level parse per pixel row;
    with ferplus, labels are FER+'s majority votes and the raw votes are kept as Record.values."""
    table, lines = _read_table(path)
    if table.empty:
        raise ValueError(f"{path}: no data rows")
    labels = _labels(path, table["emotion"], lines)
    splits = _splits(path, table["Usage"], lines)
    relabel = _ferplus(path, table, lines, ferplus, target) if ferplus is not None else None
    images, ok, skipped = _pixels(path, table["pixels"].tolist(), lines)
    images.flags.writeable = False  # records hold views of this one block
    if skipped:
        log.warning("%s: %d rows skipped (first: %s)", path, len(skipped), skipped[0])
    if relabel is None:
        records = [
            Record(f"{path}:{lines[i]}", splits[i], int(labels[i]), pixels=images[i])
            for i in np.flatnonzero(ok)
        ]
        return ReaderOutput(records=records, skipped=skipped, label_map=_label_map(None, None, {}))
    return _ferplus_output(path, lines, splits, images, ok, skipped, relabel, target)


def _read_image_folders(root: Path) -> ReaderOutput:
    """Read the root/<train|test>/<class>/ copy with the generic folder reader."""
    if not any((root / split).is_dir() for split in ("train", "test")):
        raise FileNotFoundError(f"FER2013 folder copy: expected {root / 'train'} and/or {root / 'test'}")
    return read_folder_dataset(root)


def read_fer2013(path: str | Path, ferplus: str | Path | None = None, contempt: str = "drop") -> ReaderOutput:
    """Read FER2013 from the challenge CSV (file) or the image-folder copy (directory).

    ferplus: Microsoft's fer2013new.csv, whose majority votes replace the CSV's labels (row for
    row, so only with the CSV); contempt: FER+'s contempt majority dropped, or mapped into a class.
    """
    path = Path(path)
    target = contempt_target(contempt, "FER+")
    if path.is_file():
        return _read_csv(path, Path(ferplus) if ferplus is not None else None, target)
    if path.is_dir():
        if ferplus is not None:
            raise ValueError(
                f"FER2013 ferplus={str(ferplus)!r}: the FER+ votes pair with the rows of fer2013.csv, "
                f"but {path} is the image-folder copy; give the CSV as the root"
            )
        return _read_image_folders(path)
    raise FileNotFoundError(f"FER2013: {path} is neither the fer2013.csv(.gz) file nor the image-folder copy")
