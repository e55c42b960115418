"""CK+ (extended Cohn-Kanade): the original release or the CK+48 crops, with subject-independent folds.

Layouts, detected automatically:
(a) original: root/cohn-kanade-images/Sxxx/yyy/Sxxx_yyy_zzzzzzzz.png and
    root/Emotion/Sxxx/yyy/Sxxx_yyy_zzzzzzzz_emotion.txt holding one float code 0-7 (0 neutral,
    1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise). Usual protocol: the
    last three frames up to the labelled peak frame get the code, the sequence's first frame is
    neutral; unlabelled sequences are not used. Frames are 640x490 (aligned=False).
(b) CK+48: root/<anger|contempt|disgust|fear|happy|sadness|surprise>/Sxxx_yyy_zzzzzzzz.png,
    48x48 grey crops (aligned=True).
contempt="drop" (default) drops contempt by protocol (whole sequences in (a), so their neutral
first frame goes too, giving the usual 1,236 faces); the count is logged and put in label_map.
Any class name instead maps contempt into that class. Subjects (Sxxx, kept in Record.subject) are
dealt round-robin in sorted order into `folds` folds: fold test_fold is split "test", fold val_fold
"val", the rest "train"; subsets "fold0".."fold{k-1}" and "all" serve k-fold and cross-data-set use.

Bad input: missing root, Emotion/ folder or layout -> FileNotFoundError naming the expected paths;
an emotion file that does not hold one number -> ValueError "file:1: cannot parse ..."; a code
outside 0-7 -> ValueError naming file:line and the value; an unknown class folder or a file name
without Sxxx_yyy_zzzzzzzz -> ValueError naming the path; an emotion file whose peak frame is not on
disk -> counted skip "path: image not found (listed in file:1)", but more than 5% -> FileNotFoundError;
fold options out of range or more folds than subjects -> ValueError.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from pasm.data.labels import CLASSES, canonical_index, contempt_target
from pasm.data.readers.folder import image_files
from pasm.data.readers.records import (
    ReaderOutput,
    Record,
    check_missing,
    data_lines,
    missing_image_note,
    require_dir,
)

log = logging.getLogger(__name__)

CK_CODES: dict[int, str] = {
    0: "neutral",
    1: "anger",
    2: "contempt",
    3: "disgust",
    4: "fear",
    5: "happy",
    6: "sadness",
    7: "surprise",
}
CK48_FOLDERS = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
CONTEMPT = 2
LABELLED_FRAMES = 3

_FRAME_STEM = re.compile(r"^(S\d+)_(\d+)_(\d+)$")
_EMOTION_SUFFIX = "_emotion.txt"


@dataclass(frozen=True)
class _Face:
    """A labelled image before fold assignment: CK+ class name, subject, and whether contempt drops it."""

    path: Path
    name: str
    subject: str
    in_contempt_sequence: bool


def _subject(path: Path, stem: str) -> str:
    """Subject id Sxxx from a Sxxx_yyy_zzzzzzzz stem, or ValueError naming the path."""
    match = _FRAME_STEM.match(stem)
    if match is None:
        raise ValueError(f"{path}: cannot parse subject id from the file name (expected Sxxx_yyy_zzzzzzzz)")
    return match.group(1)


def _read_code(path: Path) -> int:
    """The emotion code of one *_emotion.txt file (a float such as 3.0000000e+00)."""
    lines = list(data_lines(path))
    text = lines[0][1] if len(lines) == 1 else ""
    try:
        value = float(text)
    except ValueError:
        where = f"{path}:{lines[0][0] if lines else 1}"
        raise ValueError(f"{where}: cannot parse emotion code {text or '(empty file)'!r}") from None
    if value not in CK_CODES:
        raise ValueError(f"{path}:{lines[0][0]}: unknown emotion code {text} (expected 0-7 = {CK_CODES})")
    return int(value)


def _peak_frame(emotion_file: Path, images_root: Path) -> tuple[Path, str]:
    """The image an emotion file labels (cohn-kanade-images/Sxxx/yyy/<stem>.png) and its subject."""
    stem = emotion_file.name[: -len(_EMOTION_SUFFIX)]
    subject = _subject(emotion_file, stem)
    return images_root / subject / emotion_file.parent.name / f"{stem}.png", subject


def _sequence_faces(peak: Path, subject: str, code: int) -> list[_Face]:
    """The last frames up to the peak, labelled with code, and the sequence's neutral first frame."""
    frames = list(image_files(peak.parent))
    end = frames.index(peak) + 1
    labelled = frames[max(0, end - LABELLED_FRAMES) : end]
    contempt = code == CONTEMPT
    faces = [_Face(frame, CK_CODES[code], subject, contempt) for frame in labelled]
    if frames[0] not in labelled:
        faces.insert(0, _Face(frames[0], "neutral", subject, contempt))
    return faces


def _emotion_files(emotion_root: Path) -> list[Path]:
    """Every non-hidden *_emotion.txt under Emotion/, sorted."""
    files = sorted(p for p in emotion_root.rglob(f"*{_EMOTION_SUFFIX}") if not p.name.startswith("."))
    if not files:
        raise ValueError(f"{emotion_root}: no *{_EMOTION_SUFFIX} label files found")
    return files


def _read_original(root: Path) -> tuple[list[_Face], list[str]]:
    """Faces of the original release's labelled sequences and counted skips."""
    images_root, emotion_root = root / "cohn-kanade-images", root / "Emotion"
    if not emotion_root.is_dir():
        raise FileNotFoundError(f"CK+ label folder {emotion_root} not found (next to {images_root})")
    faces: list[_Face] = []
    skipped: list[str] = []
    files = _emotion_files(emotion_root)
    for emotion_file in files:
        code = _read_code(emotion_file)
        peak, subject = _peak_frame(emotion_file, images_root)
        if peak.is_file():
            faces.extend(_sequence_faces(peak, subject, code))
        else:
            skipped.append(missing_image_note(peak, f"{emotion_file}:1"))
    check_missing(skipped, len(files), f"CK+ {emotion_root}", f"check the root ({images_root})")
    return faces, skipped


def _read_ck48(root: Path) -> list[_Face]:
    """Faces of the CK+48 class folders."""
    faces: list[_Face] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        name = folder.name.lower()
        if name != "contempt":
            try:
                canonical_index(name)
            except KeyError:
                raise ValueError(
                    f"{folder}: folder name {folder.name!r} is not a CK+ class {CK48_FOLDERS}"
                ) from None
        contempt = name == "contempt"
        faces.extend(
            _Face(image, name, _subject(image, image.stem), contempt) for image in image_files(folder)
        )
    if not faces:
        raise ValueError(f"{root}: no images found in the CK+48 <class>/<image> layout")
    return faces


def _check_folds(folds: int, test_fold: int, val_fold: int | None, n_subjects: int) -> None:
    """ValueError unless the fold options describe non-empty, distinct test/val folds and a train part."""
    if folds < 2 + (val_fold is not None):
        raise ValueError(
            f"CK+ folds={folds}: need at least {2 + (val_fold is not None)} folds to leave a train split"
        )
    if folds > n_subjects:
        raise ValueError(
            f"CK+ folds={folds} is more than the {n_subjects} subjects found; some folds would be empty"
        )
    if not 0 <= test_fold < folds:
        raise ValueError(f"CK+ test_fold={test_fold}: expected 0-{folds - 1}")
    if val_fold is not None and (not 0 <= val_fold < folds or val_fold == test_fold):
        raise ValueError(
            f"CK+ val_fold={val_fold}: expected 0-{folds - 1}, different from test_fold={test_fold}"
        )


def subject_folds(subjects: set[str] | list[str], folds: int) -> dict[str, int]:
    """Deal subjects in sorted order (by number) round-robin into folds, deterministically."""
    ordered = sorted(set(subjects), key=lambda s: (int(s[1:]) if s[1:].isdigit() else -1, s))
    return {subject: i % folds for i, subject in enumerate(ordered)}


def _to_output(
    faces: list[_Face],
    target: int | None,
    fold_of: dict[str, int],
    folds: int,
    test_fold: int,
    val_fold: int | None,
    aligned: bool,
) -> tuple[list[Record], dict[str, list[int]]]:
    """Records with canonical labels and fold splits, plus the fold and "all" subsets."""
    split_of = {test_fold: "test", **({val_fold: "val"} if val_fold is not None else {})}
    records: list[Record] = []
    subsets: dict[str, list[int]] = {f"fold{k}": [] for k in range(folds)}
    for face in faces:
        label = target if face.name == "contempt" else canonical_index(face.name)
        fold = fold_of[face.subject]
        subsets[f"fold{fold}"].append(len(records))
        records.append(
            Record(
                str(face.path),
                split_of.get(fold, "train"),
                label,
                path=face.path,
                subject=face.subject,
                aligned=aligned,
            )
        )
    subsets["all"] = list(range(len(records)))
    return records, subsets


def _label_map(original: bool, target: int | None, dropped: list[_Face]) -> dict[str, str]:
    """Documentation of the CK+ class -> canonical class mapping, with the contempt outcome."""
    if target is not None:
        contempt = CLASSES[target]
    elif original:
        sequences = {(f.subject, f.path.parent.name) for f in dropped}
        contempt = f"dropped ({len(sequences)} sequences, {len(dropped)} images incl. their first frames)"
    else:
        contempt = f"dropped ({len(dropped)} images)"
    if original:
        sources = {f"{code} ({name})": name for code, name in CK_CODES.items()}
    else:
        sources = {name: name for name in CK48_FOLDERS}
    mapping = {
        key: contempt if name == "contempt" else CLASSES[canonical_index(name)]
        for key, name in sources.items()
    }
    if original:
        mapping["first frame of each labelled sequence"] = "neutral"
    return mapping


def _read_faces(root: Path) -> tuple[list[_Face], list[str], bool]:
    """Faces of whichever layout root holds, counted skips, and whether it is the original release."""
    if (root / "cohn-kanade-images").is_dir():
        return (*_read_original(root), True)
    if any((root / name).is_dir() for name in CK48_FOLDERS):
        return _read_ck48(root), [], False
    raise FileNotFoundError(
        f"CK+: {root} holds neither {root / 'cohn-kanade-images'} (+ Emotion/) nor the CK+48 class "
        f"folders {root}/<{'|'.join(CK48_FOLDERS)}>"
    )


def read_ckplus(
    root: str | Path, contempt: str = "drop", folds: int = 10, test_fold: int = 0, val_fold: int | None = None
) -> ReaderOutput:
    """Read CK+ (original or CK+48 layout) with subject-independent fold splits.

    Folds are dealt over every subject on disk before contempt is dropped, so a subject's fold
    does not depend on the contempt option.
    """
    root = require_dir(root, "CK+")
    target = contempt_target(contempt, "CK+")
    faces, skipped, original = _read_faces(root)
    subjects = {face.subject for face in faces}
    _check_folds(folds, test_fold, val_fold, len(subjects))
    fold_of = subject_folds(subjects, folds)
    dropped = [f for f in faces if f.in_contempt_sequence] if target is None else []
    if dropped:
        faces = [f for f in faces if not f.in_contempt_sequence]
        log.info("CK+ %s: contempt dropped by protocol (%d images)", root, len(dropped))
    if not faces:
        raise ValueError(f"{root}: no labelled CK+ faces left (contempt={contempt!r})")
    records, subsets = _to_output(faces, target, fold_of, folds, test_fold, val_fold, not original)
    label_map = _label_map(original, target, dropped)
    return ReaderOutput(records=records, subsets=subsets, skipped=skipped, label_map=label_map)
