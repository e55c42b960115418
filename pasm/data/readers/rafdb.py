"""RAF-DB (basic emotion release): label file, aligned or original images, RAN evaluation subsets.

Layout: root/EmoLabel/list_patition_label.txt (the release's spelling; list_partition_label.txt is
also accepted) with lines `train_00001.jpg 5`; images in root/Image/aligned/<stem>_aligned.jpg
(already aligned 100x100 faces) or root/Image/original/<name> (need face detection).
Labels 1-7 = Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral; the split is the name's
`train_`/`test_` prefix. The occlusion and pose subsets of the test split come from the RAN
authors' list files, which use RAF order 0-6 (RAF label minus 1) and 4-digit test numbers; entries
are matched to the label file by (prefix, number), so `test_0001_aligned` is `test_0001.jpg`.

Bad input: missing root, label file (both spellings named), image folder or list file ->
FileNotFoundError; a line that does not parse -> ValueError "file:line: cannot parse ...";
a label outside 1-7 (label file) or 0-6 (lists) -> ValueError naming file:line and the value;
a list entry that contradicts the label file, is not in it, is not a test image, or repeats an
image with a different entry -> ValueError naming file and line (an exactly repeated line is
tolerated, as is an exactly repeated label line); a listed image missing on disk -> counted skip
"path: image not found (listed in file:line)", but more than 5% missing -> FileNotFoundError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pasm.data.labels import CLASSES
from pasm.data.readers.records import (
    ReaderOutput,
    Record,
    check_missing,
    data_lines,
    missing_image_note,
    require_dir,
)

LABEL_FILE_NAMES = ("list_patition_label.txt", "list_partition_label.txt")

RAF_CLASSES: dict[int, tuple[str, str]] = {
    1: ("Surprise", "surprise"),
    2: ("Fear", "fear"),
    3: ("Disgust", "disgust"),
    4: ("Happiness", "happy"),
    5: ("Sadness", "sad"),
    6: ("Anger", "angry"),
    7: ("Neutral", "neutral"),
}
"""RAF-DB label -> (RAF name, canonical class name)."""

IMAGE_OPTIONS = ("aligned", "original")

_LABEL_NAME = re.compile(r"^(train|test)_(\d+)\.\w+$")
_LIST_NAME = re.compile(r"^(train|test)_(\d+)(?:_aligned)?(?:\.\w+)?$")
_POSE_ENTRY = re.compile(r"^(?:.*/)?(\d+)/([^/]+)$")

Key = tuple[str, int]


@dataclass(frozen=True)
class _Entry:
    """One label-file line: image name, RAF label 1-7 and where it was read."""

    name: str
    raf_label: int
    where: str


def _label_file(root: Path) -> Path:
    """The label file under root/EmoLabel in either spelling, or FileNotFoundError naming both."""
    candidates = [root / "EmoLabel" / name for name in LABEL_FILE_NAMES]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"RAF-DB label file not found; expected {candidates[0]} or {candidates[1]}")


def _key(match: re.Match[str]) -> Key:
    return match.group(1), int(match.group(2))


def _int_label(text: str, where: str, valid: range, what: str) -> int:
    """Parse a label token; ValueError if it is not an integer or outside valid."""
    if not re.fullmatch(r"[+-]?\d+", text):
        raise ValueError(f"{where}: cannot parse {what} label {text!r} (expected an integer)")
    value = int(text)
    if value not in valid:
        raise ValueError(
            f"{where}: unknown {what} label value {value} (expected {valid.start}-{valid.stop - 1})"
        )
    return value


def _read_label_file(path: Path) -> dict[Key, _Entry]:
    """Parse `name label` lines into entries keyed by (split, number), in file order."""
    entries: dict[Key, _Entry] = {}
    for number, text in data_lines(path):
        where = f"{path}:{number}"
        tokens = text.split()
        match = _LABEL_NAME.match(tokens[0]) if len(tokens) == 2 else None
        if match is None:
            raise ValueError(f"{where}: cannot parse {text!r} (expected e.g. 'train_00001.jpg 5')")
        entry = _Entry(tokens[0], _int_label(tokens[1], where, range(1, 8), "RAF-DB"), where)
        previous = entries.get(_key(match))
        if previous is not None and (previous.name, previous.raf_label) != (entry.name, entry.raf_label):
            raise ValueError(f"{where}: {entry.name} label {entry.raf_label} contradicts {previous.where}")
        entries.setdefault(_key(match), entry)
    if not entries:
        raise ValueError(f"{path}: label file has no entries")
    return entries


def _image_path(image_dir: Path, name: str, images: str) -> Path:
    return image_dir / (f"{Path(name).stem}_aligned.jpg" if images == "aligned" else name)


def _build_records(
    entries: dict[Key, _Entry], image_dir: Path, images: str
) -> tuple[list[Record], dict[Key, int], list[str]]:
    """Records for entries whose image is on disk, their index by key, and counted skips."""
    records: list[Record] = []
    index: dict[Key, int] = {}
    skipped: list[str] = []
    for key, entry in entries.items():
        path = _image_path(image_dir, entry.name, images)
        if not path.is_file():
            skipped.append(missing_image_note(path, entry.where))
            continue
        label = CLASSES.index(RAF_CLASSES[entry.raf_label][1])
        index[key] = len(records)
        records.append(Record(str(path), key[0], label, path=path, aligned=images == "aligned"))
    return records, index, skipped


def _parse_occlusion_line(text: str, where: str) -> tuple[Key, int]:
    """`test_0001_aligned <label 0-6> <occlusion type>` -> (key, RAF label 1-7)."""
    tokens = text.split()
    match = _LIST_NAME.match(tokens[0]) if len(tokens) >= 2 else None
    if match is None:
        raise ValueError(f"{where}: cannot parse {text!r} (expected e.g. 'test_0001_aligned 3 glasses')")
    return _key(match), _int_label(tokens[1], where, range(0, 7), "RAF order 0-6") + 1


def _parse_pose_line(text: str, where: str) -> tuple[Key, int]:
    """`<label 0-6>/test_0001_aligned.jpg` -> (key, RAF label 1-7)."""
    entry = _POSE_ENTRY.match(text)
    match = _LIST_NAME.match(entry.group(2)) if entry else None
    if entry is None or match is None:
        raise ValueError(f"{where}: cannot parse {text!r} (expected e.g. '3/test_0001_aligned.jpg')")
    return _key(match), _int_label(entry.group(1), where, range(0, 7), "RAF order 0-6") + 1


def resolve_list_path(given: str | Path, root: str | Path) -> Path | None:
    """Where a RAF-DB list file option points: the path as given if it is a file, else the path
    relative to the data set root if that is a file, else None; the reader and the config check use it."""
    path = Path(given)
    if path.is_file():
        return path
    if not path.is_absolute() and (Path(root) / path).is_file():
        return Path(root) / path
    return None


def _list_path(given: str | Path, root: Path) -> Path:
    """The list file `resolve_list_path` finds; FileNotFoundError naming where it looked when absent."""
    path = resolve_list_path(given, root)
    if path is not None:
        return path
    given = Path(given)
    tried = f"{given}" if given.is_absolute() else f"{given} or {root / given}"
    raise FileNotFoundError(f"RAF-DB list file not found: {tried}")


LineParser = Callable[[str, str], tuple[Key, int]]


def _read_subset(
    path: Path, parse: LineParser, entries: dict[Key, _Entry], index: dict[Key, int]
) -> list[int]:
    """Record indices of a list file's entries, each checked against the label file."""
    seen: dict[Key, tuple[str, str]] = {}
    rows: set[int] = set()
    for number, text in data_lines(path):
        where = f"{path}:{number}"
        key, raf_label = parse(text, where)
        if key in seen:
            if seen[key][0] != text:
                raise ValueError(
                    f"{where}: {text!r} names the image already listed differently at {seen[key][1]}"
                )
            continue
        seen[key] = (text, where)
        _check_list_entry(key, raf_label, where, entries)
        if key in index:  # else its image is missing, already a counted skip
            rows.add(index[key])
    if not seen:
        raise ValueError(f"{path}: list file has no entries")
    return sorted(rows)


def _check_list_entry(key: Key, raf_label: int, where: str, entries: dict[Key, _Entry]) -> None:
    """ValueError unless the entry is a test image of the label file with the same label."""
    if key[0] != "test":
        raise ValueError(
            f"{where}: {key[0]} image number {key[1]} is not a test image; subsets are of the test split"
        )
    entry = entries.get(key)
    if entry is None:
        raise ValueError(f"{where}: test image number {key[1]} is not in the label file")
    if entry.raf_label != raf_label:
        listed, labelled = RAF_CLASSES[raf_label][0], RAF_CLASSES[entry.raf_label][0]
        raise ValueError(
            f"{where}: label {raf_label - 1} ({listed}) contradicts {entry.where}, "
            f"which gives {entry.name} label {entry.raf_label} ({labelled})"
        )


def read_rafdb(
    root: str | Path,
    images: str = "aligned",
    occlusion_list: str | Path | None = None,
    pose30_list: str | Path | None = None,
    pose45_list: str | Path | None = None,
) -> ReaderOutput:
    """Read RAF-DB's train/test splits and the optional occlusion/pose30/pose45 test subsets."""
    root = require_dir(root, "RAF-DB")
    if images not in IMAGE_OPTIONS:
        raise ValueError(f"RAF-DB images option {images!r}: expected one of {IMAGE_OPTIONS}")
    label_file = _label_file(root)
    image_dir = root / "Image" / images
    if not image_dir.is_dir():
        raise FileNotFoundError(f"RAF-DB image folder {image_dir} not found (images={images!r})")
    entries = _read_label_file(label_file)
    records, index, skipped = _build_records(entries, image_dir, images)
    check_missing(
        skipped, len(entries), f"RAF-DB {label_file}", f"check the root and images={images!r} ({image_dir})"
    )
    subsets: dict[str, list[int]] = {}
    lists = {
        "occlusion": (occlusion_list, _parse_occlusion_line),
        "pose30": (pose30_list, _parse_pose_line),
        "pose45": (pose45_list, _parse_pose_line),
    }
    for name, (given, parse) in lists.items():
        if given is not None:
            subsets[name] = _read_subset(_list_path(given, root), parse, entries, index)
    label_map = {f"{raf} ({name})": canonical for raf, (name, canonical) in RAF_CLASSES.items()}
    return ReaderOutput(records=records, subsets=subsets, skipped=skipped, label_map=label_map)
