"""AffectNet (the manually annotated part): the release's CSV lists, face boxes, landmarks, valence/arousal.

Layout: root/Manually_Annotated_file_lists/training.csv and validation.csv (or both directly in
root; either may be absent, not both), images in root/Manually_Annotated_Images/<subDirectory_filePath>
(or relative to root when that folder is absent). Header:
subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal
(columns in any order). training.csv -> split "train", validation.csv -> split "validation" (the
release's test set is not public; papers report on validation). Faces are photographs (aligned=False)
with the release's face box (Record.box) and, from its 68 iBUG landmarks ("x1;y1;...;x68;y68"),
the five alignment points (Record.points); valence and arousal are kept in Record.values.
Expressions 0-7 = Neutral, Happy, Sad, Surprise, Fear, Disgust, Anger, Contempt; contempt="drop"
(default) drops contempt, a class name maps it into that class. Sources are the image paths.

Bad input: no root or neither list file -> FileNotFoundError naming the paths looked at; an empty
file, text that is not UTF-8 or CSV that does not parse -> ValueError naming the file (and line);
a column set other than the header above -> ValueError naming the file and the expected header;
a line with another number of fields, an expression that is not an integer 0-10, or a valence or
arousal that is not a finite number -> ValueError "file:line: ...". Counted skips "file:line: reason":
codes 8-10 (None, Uncertain, Non-Face), dropped contempt, a box that is not 4 finite numbers with
positive width and height, an image path already listed (in the same file, or a training line
repeating a validation image), and listed images not on disk (more than 5% -> FileNotFoundError).
Landmarks that are missing, not 136 numbers or not finite leave Record.points None (box only; logged).
"""

from __future__ import annotations

import csv
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from pasm.data.labels import CLASSES, canonical_index, contempt_target
from pasm.data.readers.records import ReaderOutput, Record, check_missing, missing_image_note, require_dir

log = logging.getLogger(__name__)

COLUMNS = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
LIST_FOLDER = "Manually_Annotated_file_lists"
IMAGE_FOLDER = "Manually_Annotated_Images"
LIST_SPLITS = {"training.csv": "train", "validation.csv": "validation"}
"""List file -> split, in the order records are returned."""

EXPRESSIONS: dict[int, tuple[str, str]] = {
    0: ("Neutral", "neutral"),
    1: ("Happy", "happy"),
    2: ("Sad", "sad"),
    3: ("Surprise", "surprise"),
    4: ("Fear", "fear"),
    5: ("Disgust", "disgust"),
    6: ("Anger", "angry"),
    7: ("Contempt", "contempt"),
}
"""AffectNet expression code -> (AffectNet name, canonical class name; contempt is handled by the option)."""
NOT_EXPRESSIONS = {8: "None", 9: "Uncertain", 10: "Non-Face"}
"""Codes that label no expression: skipped and counted."""
CONTEMPT = 7
NUM_LANDMARKS = 68
FIVE_POINT_SOURCES = (range(36, 42), range(42, 48), (30,), (48,), (54,))
"""0-based iBUG indices averaged into each of the five points: eyes (lower x, higher x), nose tip,
mouth corners."""


def _averaging_weights() -> np.ndarray:
    """(5, 68) weights: row k averages the landmarks of FIVE_POINT_SOURCES[k] (one product per face)."""
    weights = np.zeros((len(FIVE_POINT_SOURCES), NUM_LANDMARKS))
    for k, rows in enumerate(FIVE_POINT_SOURCES):
        weights[k, list(rows)] = 1.0 / len(rows)
    return weights


_WEIGHTS = _averaging_weights()

Points = tuple[tuple[float, float], ...]


@dataclass
class _Tally:
    """What one list file's lines became besides records: counted skips by kind, missing images,
    landmark gaps."""

    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)
    listed: int = 0
    no_points: int = 0

    def skip(self, where: str, kind: str, reason: str) -> None:
        """Count a skipped line under kind (for the log) with its "file:line: reason" message."""
        self.kinds[kind] += 1
        self.skipped.append(f"{where}: {reason}")


def _list_files(root: Path) -> dict[str, Path]:
    """The list files present (in LIST_SPLITS order), each in root/Manually_Annotated_file_lists or in
    root."""
    found: dict[str, Path] = {}
    looked: list[Path] = []
    for name in LIST_SPLITS:
        candidates = [root / LIST_FOLDER / name, root / name]
        looked += candidates
        present = [p for p in candidates if p.is_file()]
        if present:
            found[name] = present[0]
    if not found:
        raise FileNotFoundError(f"AffectNet: no list file found; looked for {', '.join(map(str, looked))}")
    return found


def _image_dir(root: Path) -> Path:
    """Where subDirectory_filePath is relative to: root/Manually_Annotated_Images, else root."""
    images = root / IMAGE_FOLDER
    return images if images.is_dir() else root


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) of the non-blank CSV rows, streaming; parse failures name file and line."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                raise ValueError(
                    f"{path}: cannot parse: not UTF-8 text after line {reader.line_num} "
                    "(is this the right file?)"
                ) from None
            except csv.Error as exc:
                raise ValueError(f"{path}:{reader.line_num}: cannot parse the CSV: {exc}") from None
            if any(f.strip() for f in fields):
                yield reader.line_num, fields


def _column_index(path: Path, header: list[str]) -> dict[str, int]:
    """Column name -> field index; ValueError naming the file and the expected header unless the set
    matches."""
    names = [h.strip() for h in header]
    if sorted(names) != sorted(COLUMNS):
        raise ValueError(
            f"{path}: unexpected columns {','.join(names)}; expected the header {','.join(COLUMNS)}"
        )
    return {name: i for i, name in enumerate(names)}


def _expression(text: str, where: str) -> int:
    """The expression code of a line; ValueError unless an integer 0-10."""
    text = text.strip()
    if not text.lstrip("+-").isdigit():
        raise ValueError(f"{where}: cannot parse expression {text!r} (expected an integer 0-10)")
    code = int(text)
    if code not in EXPRESSIONS and code not in NOT_EXPRESSIONS:
        raise ValueError(
            f"{where}: unknown expression code {code} (expected 0-7 = expressions, 8-10 = "
            f"{', '.join(NOT_EXPRESSIONS.values())})"
        )
    return code


def _finite(text: str) -> float | None:
    """The number a field holds, or None when it is not a finite number."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _box(texts: list[str]) -> tuple[tuple[float, float, float, float] | None, str]:
    """(x, y, width, height) of the face box, or None and why it is unusable."""
    values = [_finite(t) for t in texts]
    if any(v is None for v in values) or values[2] <= 0 or values[3] <= 0:
        given = ",".join(t.strip() for t in texts)
        return None, f"bad face box {given} (expected 4 finite numbers, width and height > 0)"
    x, y, w, h = values
    return (x, y, w, h), ""


def _annotation(text: str, name: str, where: str) -> float:
    """Valence or arousal; ValueError unless a finite number."""
    value = _finite(text)
    if value is None:
        raise ValueError(f"{where}: cannot parse {name} {text.strip()!r} (expected a finite number)")
    return value


def five_points(text: str) -> Points | None:
    """AffectNet's 68 landmarks ("x1;y1;...;x68;y68") reduced to the five alignment points, or None when
    the field is empty, not 136 numbers or not finite (the face box is then used alone)."""
    parts = text.split(";")
    if len(parts) != 2 * NUM_LANDMARKS:
        return None
    try:
        xy = np.array(parts, dtype=np.float64).reshape(NUM_LANDMARKS, 2)
    except ValueError:
        return None
    if not np.isfinite(xy).all():
        return None
    return tuple((x, y) for x, y in (_WEIGHTS @ xy).tolist())


def _code_skip(code: int, target: int | None) -> tuple[str, str] | None:
    """(kind, reason) when a code's line is skipped (not an expression, or dropped contempt), else None."""
    if code in NOT_EXPRESSIONS:
        kind = f"{code} ({NOT_EXPRESSIONS[code]})"
        return kind, f"expression {kind} is not an expression, skipped"
    if code == CONTEMPT and target is None:
        return "7 (Contempt)", "expression 7 (Contempt) dropped (contempt='drop')"
    return None


def _label(code: int, target: int | None) -> int:
    """Canonical index of a kept expression code (contempt goes to its target)."""
    return target if code == CONTEMPT else canonical_index(EXPRESSIONS[code][1])


def _line_record(
    fields: list[str],
    col: dict[str, int],
    where: str,
    code: int,
    split: str,
    image_dir: Path,
    target: int | None,
    tally: _Tally,
) -> Record | None:
    """The record of one data line with expression code, or None with the reason counted in tally."""
    code_skip = _code_skip(code, target)
    if code_skip is not None:
        tally.skip(where, *code_skip)
        return None
    box, reason = _box([fields[col[c]] for c in ("face_x", "face_y", "face_width", "face_height")])
    if box is None:
        tally.skip(where, "bad face box", reason)
        return None
    values = tuple((name, _annotation(fields[col[name]], name, where)) for name in ("valence", "arousal"))
    path = image_dir / fields[col["subDirectory_filePath"]].strip()
    tally.listed += 1
    if not path.is_file():
        tally.missing.append(missing_image_note(path, where))
        tally.kinds["image not found"] += 1
        tally.skipped.append(tally.missing[-1])
        return None
    points = five_points(fields[col["facial_landmarks"]].strip())
    tally.no_points += points is None
    return Record(
        str(path),
        split,
        _label(code, target),
        path=path,
        aligned=False,
        box=box,
        points=points,
        values=values,
    )


def _read_list(
    path: Path,
    split: str,
    image_dir: Path,
    target: int | None,
    earlier: dict[str, tuple[Path, dict[str, int]]],
) -> tuple[list[Record], _Tally, dict[str, int]]:
    """Records of one list file, its tally, and the line of each image path it lists (for later files)."""
    rows = _csv_rows(path)
    first = next(rows, None)
    if first is None:
        raise ValueError(f"{path}: empty file; expected the header {','.join(COLUMNS)} and data rows")
    col = _column_index(path, first[1])
    records: list[Record] = []
    tally = _Tally()
    seen: dict[str, int] = {}
    for line, fields in rows:
        where = f"{path}:{line}"
        if len(fields) != len(COLUMNS):
            raise ValueError(
                f"{where}: cannot parse: {len(fields)} fields, expected {len(COLUMNS)} ({','.join(COLUMNS)})"
            )
        code = _expression(fields[col["expression"]], where)
        image = fields[col["subDirectory_filePath"]].strip()
        repeat = _repeat_of(image, seen, earlier, path)
        if repeat:
            tally.skip(where, "image listed before", f"image {image} already listed at {repeat}, skipped")
            continue
        seen[image] = line
        record = _line_record(fields, col, where, code, split, image_dir, target, tally)
        if record is not None:
            records.append(record)
    check_missing(tally.missing, tally.listed, f"AffectNet {path}", f"check the root ({image_dir})")
    return records, tally, seen


def _repeat_of(
    image: str, seen: dict[str, int], earlier: dict[str, tuple[Path, dict[str, int]]], path: Path
) -> str:
    """ "file:line" where image was listed before (this file, or a file read earlier), else ""."""
    if image in seen:
        return f"{path}:{seen[image]}"
    for other, lines in earlier.values():
        if image in lines:
            return f"{other}:{lines[image]}"
    return ""


def _log_tally(path: Path, tally: _Tally) -> None:
    """Log how many lines of a list file were skipped, per code or reason."""
    if tally.kinds:
        counts = ", ".join(f"{kind}: {n}" for kind, n in tally.kinds.items())
        log.info(
            "AffectNet %s: %d lines skipped (%s; first: %s)",
            path,
            len(tally.skipped),
            counts,
            tally.skipped[0],
        )


def _label_map(target: int | None, kinds: Counter, files: dict[str, Path]) -> dict[str, str]:
    """Documentation of the code -> canonical class mapping, with the contempt outcome and skipped codes."""
    mapping = {
        f"{code} ({name})": canonical for code, (name, canonical) in EXPRESSIONS.items() if code != CONTEMPT
    }
    mapping["7 (Contempt)"] = (
        CLASSES[target] if target is not None else f"dropped ({kinds['7 (Contempt)']} images)"
    )
    for key in (f"{code} ({name})" for code, name in NOT_EXPRESSIONS.items()):
        mapping[key] = f"skipped ({kinds[key]} images)"
    mapping.update({name: f"split {LIST_SPLITS[name]}" for name in files})
    return mapping


def read_affectnet(root: str | Path, contempt: str = "drop") -> ReaderOutput:
    """Read AffectNet's training and validation lists into photograph records with boxes and points.

    validation.csv is read first, so a training line that repeats a validation image is the one
    skipped and the validation set stays the one papers report on.
    """
    root = require_dir(root, "AffectNet")
    target = contempt_target(contempt, "AffectNet")
    files = _list_files(root)
    image_dir = _image_dir(root)
    results: dict[str, tuple[list[Record], _Tally]] = {}
    earlier: dict[str, tuple[Path, dict[str, int]]] = {}
    for name in reversed(list(files)):
        records, tally, seen = _read_list(files[name], LIST_SPLITS[name], image_dir, target, earlier)
        earlier[name] = (files[name], seen)
        results[name] = (records, tally)
        _log_tally(files[name], tally)
    ordered = [results[name] for name in files]
    records = [r for recs, _ in ordered for r in recs]
    if not records:
        raise ValueError(f"AffectNet {root}: no labelled faces in {', '.join(map(str, files.values()))}")
    no_points = sum(t.no_points for _, t in ordered)
    if no_points:
        log.warning(
            "AffectNet %s: %d of %d faces have no usable landmarks (missing, not 136 numbers or not "
            "finite); their face box alone is used",
            root,
            no_points,
            len(records),
        )
    kinds = sum((t.kinds for _, t in ordered), Counter())
    skipped = [s for _, t in ordered for s in t.skipped]
    return ReaderOutput(records=records, skipped=skipped, label_map=_label_map(target, kinds, files))
