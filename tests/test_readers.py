"""Data set readers on tiny fixtures in each real layout, every kind of bad input, and the shared real
data."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pasm.data.faces import build_faces
from pasm.data.labels import CLASSES
from pasm.data.readers import read_dataset, subset_masks
from pasm.data.readers.ckplus import read_ckplus
from pasm.data.readers.fer2013 import read_fer2013
from pasm.data.readers.folder import read_folder_dataset
from pasm.data.readers.rafdb import read_rafdb
from pasm.data.readers.records import Record

SHARED = Path(__file__).resolve().parents[2] / "shared"
RAF_NAMES = ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]  # RAF labels 1-7


def _img(path: Path, value: int = 90, size: tuple[int, int] = (8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)
    return path


def _names(records: list[Record]) -> list[str]:
    return [CLASSES[r.label] for r in records]


# ---------------------------------------------------------------- RAF-DB

N_TRAIN, N_TEST = 20, 7


def _raf(root: Path, label_file: str = "list_patition_label.txt") -> Path:
    """RAF-DB basic layout: train_00001..00020 (labels cycling 1-7), test_0001..0007 (labels 1-7)."""
    lines = [f"train_{i:05d}.jpg {(i - 1) % 7 + 1}" for i in range(1, N_TRAIN + 1)]
    lines += [f"test_{i:04d}.jpg {i}" for i in range(1, N_TEST + 1)]
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / label_file).write_text("\n".join(lines) + "\n")
    for line in lines:
        name = line.split()[0]
        _img(root / "Image" / "aligned" / f"{Path(name).stem}_aligned.jpg")
        _img(root / "Image" / "original" / name, size=(12, 10))
    (root / "rafdb_occlusion_list.txt").write_text(
        "test_0001_aligned 0 glasses\ntest_0003_aligned 2 mask\ntest_0003_aligned 2 mask\n"
    )
    (root / "val_raf_db_list.txt").write_text("0/test_0001_aligned.jpg\n3/test_0004_aligned.jpg\n")
    (root / "val_raf_db_list_45.txt").write_text("6/test_0007_aligned.jpg\n")
    return root


def _raf_lists(root: Path) -> dict[str, Path]:
    return {
        "occlusion_list": root / "rafdb_occlusion_list.txt",
        "pose30_list": root / "val_raf_db_list.txt",
        "pose45_list": root / "val_raf_db_list_45.txt",
    }


def _label_file(root: Path) -> Path:
    return root / "EmoLabel" / "list_patition_label.txt"


def _edit_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


def test_rafdb_splits_labels_and_aligned_images(tmp_path):
    out = read_rafdb(_raf(tmp_path))
    assert Counter(r.split for r in out.records) == {"train": N_TRAIN, "test": N_TEST}
    test = [r for r in out.records if r.split == "test"]
    assert _names(test) == RAF_NAMES
    assert test[0].path == tmp_path / "Image" / "aligned" / "test_0001_aligned.jpg"
    assert all(r.aligned and r.path.is_file() and r.source == str(r.path) for r in out.records)
    assert out.label_map["1 (Surprise)"] == "surprise" and out.label_map["6 (Anger)"] == "angry"
    assert out.skipped == [] and out.subsets == {}


def test_rafdb_original_images_and_other_label_file_spelling(tmp_path):
    out = read_rafdb(_raf(tmp_path, "list_partition_label.txt"), images="original")
    assert len(out.records) == N_TRAIN + N_TEST
    assert out.records[0].path == tmp_path / "Image" / "original" / "train_00001.jpg"
    assert not any(r.aligned for r in out.records)


def test_rafdb_subsets_match_by_number_and_tolerate_repeats(tmp_path):
    root = _raf(tmp_path)
    out = read_rafdb(root, **_raf_lists(root))
    stems = {name: [out.records[i].path.stem for i in idx] for name, idx in out.subsets.items()}
    assert stems == {
        "occlusion": ["test_0001_aligned", "test_0003_aligned"],
        "pose30": ["test_0001_aligned", "test_0004_aligned"],
        "pose45": ["test_0007_aligned"],
    }


def test_rafdb_list_paths_relative_to_root(tmp_path):
    root = _raf(tmp_path / "raf")
    out = read_rafdb(root, occlusion_list="rafdb_occlusion_list.txt")
    assert len(out.subsets["occlusion"]) == 2


def test_rafdb_missing_root_label_file_images_and_list(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_rafdb(tmp_path / "nowhere")
    root = _raf(tmp_path / "raf")
    _label_file(root).unlink()
    with pytest.raises(FileNotFoundError, match="list_patition_label.txt or .*list_partition_label.txt"):
        read_rafdb(root)
    root = _raf(tmp_path / "raf2")
    with pytest.raises(ValueError, match="images option"):
        read_rafdb(root, images="cropped")
    with pytest.raises(FileNotFoundError, match="no_such_list"):
        read_rafdb(root, pose30_list=tmp_path / "no_such_list.txt")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("train_00003.jpg", r"list_patition_label.txt:3: cannot parse"),
        ("train_00003.jpg five", r"list_patition_label.txt:3: cannot parse"),
        ("img_00003.jpg 3", r"list_patition_label.txt:3: cannot parse"),
        ("train_00003.jpg 8", r"list_patition_label.txt:3: unknown RAF-DB label value 8"),
        ("train_00001.jpg 2", r"list_patition_label.txt:3: train_00001.jpg label 2 contradicts .*:1"),
    ],
)
def test_rafdb_bad_label_lines_are_errors(tmp_path, line, message):
    root = _raf(tmp_path)
    _edit_line(_label_file(root), 3, line)
    with pytest.raises(ValueError, match=message):
        read_rafdb(root)


def test_rafdb_label_file_that_is_not_text_is_an_error(tmp_path):
    root = _raf(tmp_path)
    _label_file(root).write_bytes(b"train_00001.jpg 1\n\xff\xd8\xff\xe0 JFIF\n")
    with pytest.raises(ValueError, match="list_patition_label.txt:2: cannot parse: not UTF-8"):
        read_rafdb(root)


def test_rafdb_repeated_label_line_is_tolerated(tmp_path):
    root = _raf(tmp_path)
    _edit_line(_label_file(root), 3, "train_00001.jpg 1")
    assert len(read_rafdb(root).records) == N_TRAIN + N_TEST - 1


@pytest.mark.parametrize(
    ("list_name", "text", "message"),
    [
        (
            "rafdb_occlusion_list.txt",
            "test_0002_aligned 0 glasses",
            r"list.txt:1: label 0 \(Surprise\) contradicts",
        ),
        ("rafdb_occlusion_list.txt", "test_0002_aligned", r"occlusion_list.txt:1: cannot parse"),
        ("rafdb_occlusion_list.txt", "test_0002_aligned 7 mask", r"occlusion_list.txt:1: unknown .* value 7"),
        (
            "rafdb_occlusion_list.txt",
            "test_0099_aligned 0 mask",
            r"list.txt:1: .*99 is not in the label file",
        ),
        (
            "rafdb_occlusion_list.txt",
            "train_00001_aligned 0 mask",
            r"occlusion_list.txt:1: .*not a test image",
        ),
        ("rafdb_occlusion_list.txt", "test_0001_aligned 0 hand", r"list.txt:4: .*listed differently at .*:1"),
        ("val_raf_db_list.txt", "test_0001_aligned.jpg", r"val_raf_db_list.txt:1: cannot parse"),
        ("val_raf_db_list.txt", "x/test_0001_aligned.jpg", r"val_raf_db_list.txt:1: cannot parse"),
        ("val_raf_db_list.txt", "9/test_0001_aligned.jpg", r"val_raf_db_list.txt:1: unknown .* value 9"),
        (
            "val_raf_db_list_45.txt",
            "5/test_0007_aligned.jpg",
            r"list_45.txt:1: label 5 \(Anger\) contradicts",
        ),
    ],
)
def test_rafdb_bad_list_lines_are_errors(tmp_path, list_name, text, message):
    root = _raf(tmp_path)
    path = root / list_name
    if "listed differently" in message:
        path.write_text(path.read_text() + text + "\n")
    else:
        _edit_line(path, 1, text)
    with pytest.raises(ValueError, match=message):
        read_rafdb(root, **_raf_lists(root))


def test_rafdb_few_missing_images_are_counted_skips(tmp_path):
    root = _raf(tmp_path)
    missing = root / "Image" / "aligned" / "test_0003_aligned.jpg"
    missing.unlink()
    out = read_rafdb(root, **_raf_lists(root))
    assert len(out.records) == N_TRAIN + N_TEST - 1
    assert out.skipped == [f"{missing}: image not found (listed in {_label_file(root)}:{N_TRAIN + 3})"]
    assert [out.records[i].path.stem for i in out.subsets["occlusion"]] == ["test_0001_aligned"]


def test_rafdb_many_missing_images_mean_a_wrong_root(tmp_path):
    root = _raf(tmp_path)
    for i in (1, 2):
        (root / "Image" / "aligned" / f"test_000{i}_aligned.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="2 of 27 listed images are missing"):
        read_rafdb(root)


# ---------------------------------------------------------------- FER2013


def _pixels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (48, 48), dtype=np.uint8)


def _fer_rows(usages=("Training", "Training", "PublicTest", "PrivateTest")) -> list[tuple[str, str, str]]:
    return [(str(i % 7), " ".join(map(str, _pixels(i).ravel())), u) for i, u in enumerate(usages)]


def _write_csv(path: Path, rows, header: str = "emotion,pixels,Usage") -> Path:
    text = header + "\n" + "".join(f"{e},{p},{u}\n" for e, p, u in rows)
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["fer2013.csv", "fer2013.csv.gz"])
def test_fer2013_csv_splits_labels_pixels(tmp_path, name):
    path = _write_csv(tmp_path / name, _fer_rows())
    out = read_fer2013(path)
    assert [r.split for r in out.records] == ["train", "train", "PublicTest", "PrivateTest"]
    assert [r.label for r in out.records] == [0, 1, 2, 3]
    assert [r.source for r in out.records] == [f"{path}:{line}" for line in (2, 3, 4, 5)]
    assert all(r.path is None and r.aligned for r in out.records)
    assert out.records[2].pixels.dtype == np.uint8 and np.array_equal(out.records[2].pixels, _pixels(2))
    assert out.label_map["0 (Angry)"] == "angry" and out.label_map["Usage Training"] == "split train"


def test_fer2013_csv_without_private_test(tmp_path):
    out = read_fer2013(_write_csv(tmp_path / "f.csv", _fer_rows(("Training", "PublicTest", "Training"))))
    assert Counter(r.split for r in out.records) == {"train": 2, "PublicTest": 1}


def test_fer2013_bad_pixel_rows_are_counted_skips_named_by_line(tmp_path):
    rows = _fer_rows(("Training",) * 6)
    good = rows[0][1]
    rows[1] = ("1", good.rsplit(" ", 1)[0], "Training")  # 2,303 values
    rows[2] = ("2", good + " 7", "Training")  # 2,305 values
    rows[3] = ("3", "256 " + good.split(" ", 1)[1], "Training")
    rows[4] = ("4", "-1 " + good.split(" ", 1)[1], "Training")
    rows[5] = ("5", "x " + good.split(" ", 1)[1], "Training")
    path = _write_csv(tmp_path / "f.csv", rows)
    out = read_fer2013(path)
    assert [r.source for r in out.records] == [f"{path}:2"]
    assert [s.split(": ")[0] for s in out.skipped] == [f"{path}:{line}" for line in (3, 4, 5, 6, 7)]
    assert "2303 pixel values" in out.skipped[0] and "outside 0-255" in out.skipped[2]


def test_fer2013_blank_lines_keep_line_numbers(tmp_path):
    path = _write_csv(tmp_path / "f.csv", _fer_rows(("Training", "PublicTest")))
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1], "", lines[2]]) + "\n")
    assert [r.source for r in read_fer2013(path).records] == [f"{path}:2", f"{path}:4"]


@pytest.mark.parametrize(
    ("header", "row", "message"),
    [
        (
            "emotion,pixels",
            None,
            r"f.csv: missing column\(s\) \['Usage'\]; expected the header emotion,pixels,Usage",
        ),
        (None, ("7", None, "Training"), r"f.csv:3: unknown emotion value 7"),
        (None, ("sad", None, "Training"), r"f.csv:3: cannot parse emotion 'sad'"),
        (None, ("1", None, "Validation"), r"f.csv:3: unknown Usage value 'Validation'"),
        (None, ("1", None, ""), r"f.csv:3: cannot parse empty Usage"),
    ],
)
def test_fer2013_bad_labels_and_header_are_errors(tmp_path, header, row, message):
    rows = _fer_rows(("Training", "Training"))
    if row is not None:
        rows[1] = (row[0], rows[1][1], row[2])
    if header is not None:
        text = header + "\n" + "".join(f"{e},{p}\n" for e, p, _ in rows)
        (tmp_path / "f.csv").write_text(text)
    else:
        _write_csv(tmp_path / "f.csv", rows)
    with pytest.raises(ValueError, match=message):
        read_fer2013(tmp_path / "f.csv")


def _broken_csv(tmp_path: Path, case: str) -> Path:
    """A FER2013 csv or csv.gz broken in one of the ways a copy or download goes wrong."""
    whole = _write_csv(tmp_path / "whole.csv.gz", _fer_rows(("Training",) * 40)).read_bytes()
    files = {
        "empty csv": ("fer2013.csv", b""),
        "empty csv.gz": ("fer2013.csv.gz", gzip.compress(b"")),
        "zero-byte csv.gz": ("fer2013.csv.gz", b""),
        "truncated csv.gz": ("fer2013.csv.gz", whole[: len(whole) // 2]),
        "plain text named .gz": ("fer2013.csv.gz", b"emotion,pixels,Usage\n0,1 2,Training\n"),
        "extra fields": ("fer2013.csv", b"emotion,pixels,Usage\n0,1 2,Training\n\n0,1 2,Training,x\n"),
    }
    name, data = files[case]
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty csv", r"fer2013.csv: empty file; expected the header emotion,pixels,Usage"),
        ("empty csv.gz", r"fer2013.csv.gz: empty file"),
        ("zero-byte csv.gz", r"fer2013.csv.gz: empty file"),
        ("truncated csv.gz", r"fer2013.csv.gz: truncated or damaged compressed file"),
        ("plain text named .gz", r"fer2013.csv.gz: not a gzip file although its name ends in .gz"),
        ("extra fields", r"fer2013.csv:4: cannot parse the CSV: Expected 3 fields in line 4, saw 4"),
    ],
)
def test_fer2013_empty_truncated_or_unparsable_files_are_named(tmp_path, case, message):
    path = _broken_csv(tmp_path, case)
    with pytest.raises(ValueError, match=message) as err:
        read_fer2013(path)
    assert str(err.value).startswith(str(path))


def test_fer2013_image_folder_copy(tmp_path):
    _img(tmp_path / "train" / "happy" / "Training_1.jpg", size=(48, 48))
    _img(tmp_path / "train" / "angry" / "Training_2.jpg", size=(48, 48))
    _img(tmp_path / "test" / "neutral" / "PublicTest_3.jpg", size=(48, 48))
    out = read_fer2013(tmp_path)
    assert sorted((r.split, CLASSES[r.label]) for r in out.records) == [
        ("test", "neutral"),
        ("train", "angry"),
        ("train", "happy"),
    ]
    assert all(r.aligned and r.path is not None for r in out.records)


def test_fer2013_missing_path_or_folder_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_fer2013(tmp_path / "nowhere.csv")
    _img(tmp_path / "Training" / "happy" / "a.jpg")
    with pytest.raises(FileNotFoundError, match="train"):
        read_fer2013(tmp_path)


def test_pixel_records_decode_to_rgb_faces(tmp_path):
    path = _write_csv(tmp_path / "f.csv", _fer_rows(("Training", "PublicTest")))
    faces = build_faces(read_fer2013(path).records, 48, {})
    assert faces.images.shape == (2, 48, 48, 3)
    assert np.array_equal(faces.images[1][..., 0], _pixels(1)) and np.array_equal(
        faces.images[1][..., 2], _pixels(1)
    )
    assert faces.sources.tolist() == [f"{path}:2", f"{path}:3"]
    assert build_faces(read_fer2013(path).records, 16, {}).images.shape == (2, 16, 16, 3)


# ---------------------------------------------------------------- CK+ original layout


def _ck_sequence(
    root: Path, subject: str, seq: str, frames: int, code: float | str | None, peak: int | None = None
):
    """A cohn-kanade-images sequence; code writes Emotion/<..>_emotion.txt naming frame `peak` (default
    last)."""
    for f in range(1, frames + 1):
        _img(
            root / "cohn-kanade-images" / subject / seq / f"{subject}_{seq}_{f:08d}.png",
            value=10 * f,
            size=(16, 12),
        )
    if code is not None:
        peak = peak or frames
        path = root / "Emotion" / subject / seq / f"{subject}_{seq}_{peak:08d}_emotion.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"   {code:.7e}\n" if isinstance(code, float) else code)
        return path
    return None


def _ck_original(root: Path) -> Path:
    """Two subjects: S005 anger (5 frames), contempt (4 frames), unlabelled; S010 happy (peak 5 of 6)."""
    _ck_sequence(root, "S005", "001", 5, 1.0)
    _ck_sequence(root, "S005", "002", 4, 2.0)
    _ck_sequence(root, "S005", "003", 4, None)
    _ck_sequence(root, "S010", "001", 6, 5.0, peak=5)
    return root


def _frames(records: list[Record]) -> list[tuple[str, str]]:
    return [(r.path.stem, CLASSES[r.label]) for r in records]


def test_ckplus_original_protocol_drops_contempt_sequences(tmp_path):
    out = read_ckplus(_ck_original(tmp_path), folds=2)
    assert _frames(out.records) == [
        ("S005_001_00000001", "neutral"),
        ("S005_001_00000003", "angry"),
        ("S005_001_00000004", "angry"),
        ("S005_001_00000005", "angry"),
        ("S010_001_00000001", "neutral"),
        ("S010_001_00000003", "happy"),
        ("S010_001_00000004", "happy"),
        ("S010_001_00000005", "happy"),
    ]
    assert [r.subject for r in out.records] == ["S005"] * 4 + ["S010"] * 4
    assert not any(r.aligned for r in out.records)
    assert out.label_map["2 (contempt)"].startswith("dropped (1 sequences, 4 images")
    assert out.label_map["1 (anger)"] == "angry" and out.label_map["0 (neutral)"] == "neutral"
    assert [r.split for r in out.records] == ["test"] * 4 + ["train"] * 4
    assert out.subsets == {"fold0": [0, 1, 2, 3], "fold1": [4, 5, 6, 7], "all": list(range(8))}


def test_ckplus_original_contempt_mapped(tmp_path):
    out = read_ckplus(_ck_original(tmp_path), contempt="disgust", folds=2, test_fold=1)
    assert Counter(_names(out.records)) == {"neutral": 3, "angry": 3, "disgust": 3, "happy": 3}
    assert out.label_map["2 (contempt)"] == "disgust"
    assert {r.subject for r in out.records if r.split == "test"} == {"S010"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("abc\n", r"_emotion.txt:1: cannot parse emotion code 'abc'"),
        ("", "cannot parse emotion code '\\(empty file\\)'"),
        ("9.0\n", r"_emotion.txt:1: unknown emotion code 9.0"),
        ("1.0\n2.0\n", "cannot parse"),
        ("2.5\n", "unknown emotion code 2.5"),
    ],
)
def test_ckplus_bad_emotion_files_are_errors(tmp_path, content, message):
    root = _ck_original(tmp_path)
    _ck_sequence(root, "S010", "002", 4, content)
    with pytest.raises(ValueError, match=message):
        read_ckplus(root, folds=2)


def test_ckplus_missing_peak_frames_are_counted_then_fatal(tmp_path):
    root = _ck_original(tmp_path)
    for s in range(20, 40):
        _ck_sequence(root, f"S{s:03d}", "001", 4, 7.0)
    gone = root / "cohn-kanade-images" / "S020" / "001" / "S020_001_00000004.png"
    gone.unlink()
    out = read_ckplus(root, folds=2)
    listed = root / "Emotion" / "S020" / "001" / "S020_001_00000004_emotion.txt"
    assert out.skipped == [f"{gone}: image not found (listed in {listed}:1)"]
    assert len(out.records) == 8 + 19 * 4
    for s in range(21, 23):
        (root / "cohn-kanade-images" / f"S{s:03d}" / "001" / f"S{s:03d}_001_00000004.png").unlink()
    with pytest.raises(FileNotFoundError, match="3 of 23 listed images are missing"):
        read_ckplus(root, folds=2)


def test_ckplus_missing_root_labels_or_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_ckplus(tmp_path / "nowhere")
    _ck_sequence(tmp_path / "a", "S005", "001", 4, None)
    with pytest.raises(FileNotFoundError, match="Emotion"):
        read_ckplus(tmp_path / "a")
    (tmp_path / "b" / "stuff").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="cohn-kanade-images.*CK\\+48"):
        read_ckplus(tmp_path / "b")
    _ck_sequence(tmp_path / "c", "S005", "001", 4, None)
    (tmp_path / "c" / "Emotion").mkdir()
    with pytest.raises(ValueError, match="no \\*_emotion.txt"):
        read_ckplus(tmp_path / "c")


def test_ckplus_bad_emotion_file_name(tmp_path):
    root = _ck_original(tmp_path)
    bad = root / "Emotion" / "S010" / "001" / "frame5_emotion.txt"
    bad.write_text("5.0\n")
    with pytest.raises(ValueError, match="frame5_emotion.txt: cannot parse subject id"):
        read_ckplus(root, folds=2)


# ---------------------------------------------------------------- CK+48 layout


def _ck48(root: Path, subjects: int = 7) -> Path:
    """Subject k has one 3-frame sequence in class k % 7 (contempt included)."""
    classes = ["anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"]
    for k in range(subjects):
        for f in range(3):
            _img(root / classes[k % 7] / f"S{(k + 1) * 5:03d}_001_{f + 10:08d}.png", size=(48, 48))
    (root / "README.txt").write_text("not a class")
    return root


def test_ck48_classes_subjects_and_contempt(tmp_path):
    root = _ck48(tmp_path, subjects=7)
    out = read_ckplus(root, folds=3)
    assert len(out.records) == 18 and Counter(_names(out.records)) == {
        "angry": 3,
        "disgust": 3,
        "fear": 3,
        "happy": 3,
        "sad": 3,
        "surprise": 3,
    }
    assert all(r.aligned and r.subject.startswith("S") for r in out.records)
    assert out.label_map["contempt"] == "dropped (3 images)" and out.label_map["sadness"] == "sad"
    mapped = read_ckplus(root, folds=3, contempt="Disgust")
    assert len(mapped.records) == 21 and Counter(_names(mapped.records))["disgust"] == 6


def _assert_subject_independent(out) -> None:
    folds = [{out.records[i].subject for i in out.subsets[f"fold{k}"]} for k in range(len(out.subsets) - 1)]
    assert sum(map(len, folds)) == len(set().union(*folds))  # no subject in two folds
    by_split: dict[str, set[str]] = {}
    for r in out.records:
        by_split.setdefault(r.split, set()).add(r.subject)
    splits = list(by_split.values())
    assert all(not (a & b) for i, a in enumerate(splits) for b in splits[i + 1 :])
    assert sorted(i for k in range(len(folds)) for i in out.subsets[f"fold{k}"]) == out.subsets["all"]


def test_ck48_folds_are_subject_independent_and_deterministic(tmp_path):
    root = _ck48(tmp_path, subjects=12)
    out = read_ckplus(root, folds=4, test_fold=2, val_fold=3)
    _assert_subject_independent(out)
    assert {r.split for r in out.records} == {"train", "val", "test"}
    # sorted subjects S005, S010, ... dealt round-robin: S015 is the third -> fold 2 -> test
    assert {r.subject for r in out.records if r.split == "test"} == {"S015", "S035", "S055"}
    again = read_ckplus(root, folds=4, test_fold=2, val_fold=3, contempt="disgust")
    fold_of = {r.subject: k for k in range(4) for r in (again.records[i] for i in again.subsets[f"fold{k}"])}
    assert all(
        fold_of[r.subject] == k for k in range(4) for r in (out.records[i] for i in out.subsets[f"fold{k}"])
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"folds": 1}, "at least 2 folds"),
        ({"folds": 3, "val_fold": 0, "test_fold": 0}, "val_fold=0"),
        ({"folds": 2, "val_fold": 1}, "at least 3 folds"),
        ({"folds": 3, "test_fold": 3}, "test_fold=3"),
        ({"folds": 8}, "more than the 7 subjects"),
        ({"folds": 3, "contempt": "smirk"}, "contempt option 'smirk'"),
    ],
)
def test_ckplus_bad_options(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        read_ckplus(_ck48(tmp_path), **kwargs)


def test_ck48_bad_folder_or_file_name(tmp_path):
    root = _ck48(tmp_path)
    _img(root / "smirk" / "S001_001_00000001.png")
    with pytest.raises(ValueError, match="smirk"):
        read_ckplus(root, folds=3)
    root = _ck48(tmp_path / "b")
    bad = _img(root / "happy" / "subject1.png")
    with pytest.raises(ValueError, match=f"{bad}: cannot parse subject id"):
        read_ckplus(root, folds=3)


# ---------------------------------------------------------------- folder layout and dispatch


def _folder(root: Path) -> Path:
    _img(root / "train" / "Happiness" / "a.png")
    _img(root / "train" / "contempt" / "b.png")
    _img(root / "val" / "neutral" / "c.png")
    return root


def test_folder_dataset_with_class_map(tmp_path):
    out = read_folder_dataset(_folder(tmp_path), {"contempt": "disgust"})
    assert [(r.split, CLASSES[r.label], r.path.name) for r in out.records] == [
        ("train", "happy", "a.png"),
        ("train", "disgust", "b.png"),
        ("val", "neutral", "c.png"),
    ]
    assert out.label_map == {"Happiness": "happy", "contempt": "disgust", "neutral": "neutral"}
    assert all(r.source == str(r.path) and r.aligned for r in out.records)
    with pytest.raises(ValueError, match="contempt"):
        read_folder_dataset(tmp_path)


def test_read_dataset_dispatch(tmp_path):
    root = _folder(tmp_path)
    for fmt in ("folder", "demo"):
        assert len(read_dataset(fmt, root, {"class_map": {"contempt": "disgust"}}).records) == 3
    assert len(read_dataset("ckplus", _ck48(tmp_path / "ck"), {"folds": 3}).records) == 18
    with pytest.raises(ValueError, match="unknown data set format 'sfew'.*'affectnet'.*'ckplus'.*'rafdb'"):
        read_dataset("sfew", root, {})
    with pytest.raises(
        ValueError, match=r"unknown reader option\(s\) \['fold'\]; accepted: \['contempt', 'folds'"
    ):
        read_dataset("ckplus", root, {"fold": 3})


def test_subset_masks_follow_kept_rows(tmp_path):
    root = _raf(tmp_path)
    (root / "Image" / "aligned" / "test_0001_aligned.jpg").write_bytes(b"not a jpeg")
    out = read_rafdb(root, **_raf_lists(root))
    faces = build_faces(out.records, 8, {})
    masks = subset_masks(out, faces.sources.tolist())
    assert [Path(s).stem for s in faces.sources[masks["occlusion"]]] == ["test_0003_aligned"]
    assert masks["pose30"].sum() == 1 and masks["pose45"].sum() == 1


def test_record_needs_path_or_pixels():
    with pytest.raises(ValueError, match="needs an image path or pixels"):
        Record("x", "train", 0)


# ---------------------------------------------------------------- real shared data


def _shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


def test_real_fer2013_counts():
    out = read_fer2013(_shared("datasets", "fer2013", "fer2013.csv.gz"))
    counts = Counter((r.split, CLASSES[r.label]) for r in out.records)
    expected = {
        "train": [3995, 436, 4097, 7215, 4830, 3171, 4965],
        "PublicTest": [467, 56, 496, 895, 653, 415, 607],
    }
    assert {s: [counts[(s, c)] for c in CLASSES] for s in expected} == expected
    assert len(out.records) == 28709 + 3589 and out.skipped == []
    assert out.records[0].pixels.shape == (48, 48)


def test_real_ck48_counts():
    root = _shared("datasets", "ck48", "CK+48")
    out = read_ckplus(root)
    assert len(out.records) == 927
    assert Counter(_names(out.records)) == {
        "angry": 135,
        "disgust": 177,
        "fear": 75,
        "happy": 207,
        "sad": 84,
        "surprise": 249,
    }
    assert all(r.subject and r.path.name.startswith(r.subject + "_") for r in out.records)
    _assert_subject_independent(out)
    assert len(read_ckplus(root, contempt="disgust").records) == 981
