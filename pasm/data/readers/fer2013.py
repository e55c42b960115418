"""FER2013: the ICML 2013 challenge CSV (plain or .gz) or the popular train/test image-folder copy.

CSV: header `emotion,pixels,Usage`; 48x48 grey pixels as 2,304 space-separated values; emotion
ids are already canonical (0 Angry ... 6 Neutral). Usage Training -> split "train", PublicTest and
PrivateTest keep their names; any of them may be absent. Sources are "<csv path>:<line>".
Folder copy: root/<train|test>/<angry|disgust|...|neutral>/*.jpg -> splits "train"/"test"
(other split folders are read under their own names). All faces are already aligned.

Bad input: missing file or folder (or a folder with neither train/ nor test/) -> FileNotFoundError;
an empty file, a truncated or damaged .gz, a .gz name on a plain file, a row with more fields than
the header or text that is not UTF-8 -> ValueError naming the file (and the line where pandas gives one);
a missing column -> ValueError naming the file and the expected header; an emotion that is not an
integer or a Usage that is empty -> ValueError "file:line: cannot parse ..."; an emotion outside
0-6 or an unknown Usage -> ValueError naming file:line and the value; a row whose pixel count is
not 2,304 or with values outside 0-255 -> counted skip "file:line: reason". Blank lines are ignored.
"""

from __future__ import annotations

import gzip
import logging
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from pasm.data.labels import CLASSES, NUM_CLASSES
from pasm.data.readers.folder import read_folder_dataset
from pasm.data.readers.records import Record, ReaderOutput

log = logging.getLogger(__name__)

COLUMNS = ("emotion", "pixels", "Usage")
USAGE_SPLITS = {"Training": "train", "PublicTest": "PublicTest", "PrivateTest": "PrivateTest"}
SIDE = 48
NUM_PIXELS = SIDE * SIDE
FIRST_DATA_LINE = 2  # line 1 is the header


def _parser_message(path: Path, exc: pd.errors.ParserError) -> str:
    """pandas' parser error as "file:line: cannot parse ..." (pandas counts lines from 1, the header included)."""
    text = str(exc).strip().replace("Error tokenizing data. C error: ", "")
    line = re.search(r"\bin line (\d+)", text)
    return f"{path}:{line.group(1)}: cannot parse the CSV: {text}" if line else f"{path}: cannot parse the CSV: {text}"


def _csv_table(path: Path) -> pd.DataFrame:
    """pandas' parse of the file; its failures (empty, truncated or mislabelled .gz, bad rows) as ValueErrors naming it."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: empty file; expected the header {','.join(COLUMNS)} and data rows") from None
    except (EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: truncated or damaged compressed file ({exc}); copy or download it again") from None
    except gzip.BadGzipFile as exc:
        raise ValueError(f"{path}: not a gzip file although its name ends in .gz ({exc})") from None
    except pd.errors.ParserError as exc:
        raise ValueError(_parser_message(path, exc)) from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: cannot parse: not UTF-8 text (is this the FER2013 CSV?)") from None


def _read_table(path: Path) -> pd.DataFrame:
    """All columns as strings, blank lines kept as empty rows so row i is line i + 2."""
    table = _csv_table(path)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {missing}; expected the header {','.join(COLUMNS)} "
            f"(found {','.join(map(str, table.columns))})"
        )
    return table


def _labels(path: Path, emotion: pd.Series, lines: np.ndarray) -> np.ndarray:
    """Emotion ids as int64; ValueError naming the first bad line."""
    values = pd.to_numeric(emotion.str.strip(), errors="coerce")
    bad = values.isna().to_numpy() | (values.fillna(0) % 1 != 0).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{path}:{lines[i]}: cannot parse emotion {emotion.iloc[i]!r} (expected an integer 0-6)")
    labels = values.to_numpy(dtype=np.int64)
    outside = (labels < 0) | (labels >= NUM_CLASSES)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise ValueError(f"{path}:{lines[i]}: unknown emotion value {labels[i]} (expected 0-6 = {', '.join(CLASSES)})")
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
    """Parse each row's pixel string (one C-level parse) into (N, 48, 48) uint8; bad rows are counted skips."""
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


def _read_csv(path: Path) -> ReaderOutput:
    """Read the challenge CSV: vectorised label and split checks, one C-level parse per pixel row."""
    table = _read_table(path)
    lines = np.arange(len(table)) + FIRST_DATA_LINE
    blank = (table[list(COLUMNS)] == "").all(axis=1).to_numpy()
    table, lines = table.loc[~blank], lines[~blank]
    if table.empty:
        raise ValueError(f"{path}: no data rows")
    labels = _labels(path, table["emotion"], lines)
    splits = _splits(path, table["Usage"], lines)
    images, ok, skipped = _pixels(path, table["pixels"].tolist(), lines)
    images.flags.writeable = False  # records hold views of this one block
    if skipped:
        log.warning("%s: %d rows skipped (first: %s)", path, len(skipped), skipped[0])
    records = [
        Record(f"{path}:{lines[i]}", splits[i], int(labels[i]), pixels=images[i])
        for i in np.flatnonzero(ok)
    ]
    label_map = {f"{i} ({name.capitalize()})": name for i, name in enumerate(CLASSES)}
    label_map.update({f"Usage {usage}": f"split {split}" for usage, split in USAGE_SPLITS.items()})
    return ReaderOutput(records=records, skipped=skipped, label_map=label_map)


def _read_image_folders(root: Path) -> ReaderOutput:
    """Read the root/<train|test>/<class>/ copy with the generic folder reader."""
    if not any((root / split).is_dir() for split in ("train", "test")):
        raise FileNotFoundError(f"FER2013 folder copy: expected {root / 'train'} and/or {root / 'test'}")
    return read_folder_dataset(root)


def read_fer2013(path: str | Path) -> ReaderOutput:
    """Read FER2013 from the challenge CSV (file) or the image-folder copy (directory)."""
    path = Path(path)
    if path.is_file():
        return _read_csv(path)
    if path.is_dir():
        return _read_image_folders(path)
    raise FileNotFoundError(f"FER2013: {path} is neither the fer2013.csv(.gz) file nor the image-folder copy")
