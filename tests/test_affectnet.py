"""AffectNet reader on tiny fixtures in the release's layout: labels, boxes, points, values, every skip
and error."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from pasm.data.labels import CLASSES
from pasm.data.readers import read_dataset
from pasm.data.readers.affectnet import COLUMNS, five_points, read_affectnet

HEADER = ",".join(COLUMNS)
LISTS = "Manually_Annotated_file_lists"
IMAGES = "Manually_Annotated_Images"
AFFECT_NAMES = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "angry"]  # codes 0-6


def _landmarks(offset: float = 0.0) -> str:
    """68 iBUG points on a line: point i at (10 + i + offset, 20 + 2i), so every mean is exact."""
    return ";".join(f"{10 + i + offset:.2f};{20 + 2 * i:.2f}" for i in range(68))


EXPECTED_POINTS = ((48.5, 97.0), (54.5, 109.0), (40.0, 80.0), (58.0, 116.0), (64.0, 128.0))
"""_landmarks() reduced: mean of 36-41, mean of 42-47, 30, 48, 54."""


def _line(
    image: str,
    code: int | str,
    box: str = "4,5,30,40",
    landmarks: str | None = None,
    valence: str = "0.5",
    arousal: str = "-0.25",
) -> str:
    landmarks = _landmarks() if landmarks is None else landmarks
    return f"{image},{box},{landmarks},{code},{valence},{arousal}"


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (48, 64), (120, 90, 60)).save(path)


def _write_list(path: Path, lines: list[str], images: Path | None, header: str = HEADER) -> Path:
    """A list file as the release writes it; the image of every line is written (unless images is None)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(line + "\n" for line in lines))
    if images is not None:
        for line in lines:
            _png(images / line.split(",")[0])
    return path


# Training lines 2-28 of the fixture: what each becomes with contempt="drop".
TRAIN_LINES = [
    _line("101/neutral.png", 0),  # 2
    _line("101/happy.png", 1),  # 3
    _line("102/sad.png", 2),  # 4
    _line("102/surprise.png", 3),  # 5
    _line("103/fear.png", 4),  # 6
    _line("103/disgust.png", 5),  # 7
    _line("104/anger.png", 6),  # 8
    _line("104/contempt.png", 7),  # 9 dropped
    _line("105/none.png", 8),  # 10 skipped
    _line("105/uncertain.png", 9),  # 11 skipped
    _line("105/nonface.png", 10),  # 12 skipped
    _line("106/flat_box.png", 1, box="4,5,0,40"),  # 13 skipped: width 0
    _line("106/short_landmarks.png", 1, landmarks=_landmarks().rsplit(";", 1)[0]),  # 14 points None
    _line("106/no_landmarks.png", 2, landmarks=""),  # 15 points None
    _line("106/nan_landmarks.png", 3, landmarks=_landmarks().replace("30.00", "nan", 1)),  # 16 points None
    _line("101/happy.png", 1),  # 17 repeats line 3
    _line("107/missing.png", 4),  # 18 image not on disk
    _line("200/val_neutral.png", 0),  # 19 repeats validation.csv:2
    *[_line(f"108/filler{k}.png", k % 7) for k in range(9)],  # 20-28
]
VAL_LINES = [_line("200/val_neutral.png", 0), _line("200/val_anger.png", 6), _line("200/val_contempt.png", 7)]


def _affectnet(root: Path) -> Path:
    """The release's layout: list files in Manually_Annotated_file_lists/, images in
    Manually_Annotated_Images/."""
    images = root / IMAGES
    _write_list(root / LISTS / "training.csv", TRAIN_LINES, images)
    _write_list(root / LISTS / "validation.csv", VAL_LINES, images)
    (images / "107" / "missing.png").unlink()
    (images / "103" / "fear.png").write_bytes(b"not an image: the reader must not decode it")
    return root


def _train(root: Path) -> Path:
    return root / LISTS / "training.csv"


def _by_name(records) -> dict[str, object]:
    return {r.path.name: r for r in records}


def test_affectnet_labels_splits_boxes_points_and_values(tmp_path):
    root = _affectnet(tmp_path)
    out = read_affectnet(root)
    train = [r for r in out.records if r.split == "train"]
    assert [r.split for r in out.records] == ["train"] * len(train) + ["validation"] * 2
    assert [CLASSES[r.label] for r in train[:7]] == AFFECT_NAMES
    assert len(train) == 7 + 3 + 9
    first = out.records[0]
    assert first.path == root / IMAGES / "101" / "neutral.png" and first.source == str(first.path)
    assert first.box == (4.0, 5.0, 30.0, 40.0) and all(isinstance(v, float) for v in first.box)
    assert first.points == EXPECTED_POINTS
    assert first.values == (("valence", 0.5), ("arousal", -0.25))
    assert not any(r.aligned or r.pixels is not None for r in out.records)
    assert [r.path.name for r in out.records if r.points is None] == [
        "short_landmarks.png",
        "no_landmarks.png",
        "nan_landmarks.png",
    ]
    assert _by_name(out.records)["fear.png"].label == CLASSES.index("fear")  # listed, not decoded
    val = [(r.path.name, CLASSES[r.label]) for r in out.records if r.split == "validation"]
    assert val == [("val_neutral.png", "neutral"), ("val_anger.png", "angry")]


def test_affectnet_skips_are_counted_with_file_and_line(tmp_path):
    root = _affectnet(tmp_path)
    out = read_affectnet(root)
    train, val = _train(root), root / LISTS / "validation.csv"
    assert out.skipped == [
        f"{train}:9: expression 7 (Contempt) dropped (contempt='drop')",
        f"{train}:10: expression 8 (None) is not an expression, skipped",
        f"{train}:11: expression 9 (Uncertain) is not an expression, skipped",
        f"{train}:12: expression 10 (Non-Face) is not an expression, skipped",
        f"{train}:13: bad face box 4,5,0,40 (expected 4 finite numbers, width and height > 0)",
        f"{train}:17: image 101/happy.png already listed at {train}:3, skipped",
        f"{root / IMAGES / '107' / 'missing.png'}: image not found (listed in {train}:18)",
        f"{train}:19: image 200/val_neutral.png already listed at {val}:2, skipped",
        f"{val}:4: expression 7 (Contempt) dropped (contempt='drop')",
    ]
    assert out.label_map["0 (Neutral)"] == "neutral" and out.label_map["6 (Anger)"] == "angry"
    assert out.label_map["7 (Contempt)"] == "dropped (2 images)"
    assert out.label_map["10 (Non-Face)"] == "skipped (1 images)"
    assert (
        out.label_map["training.csv"] == "split train"
        and out.label_map["validation.csv"] == "split validation"
    )


def test_affectnet_contempt_mapped_into_a_class(tmp_path):
    out = read_affectnet(_affectnet(tmp_path), contempt="Disgust")
    names = _by_name(out.records)
    assert (
        CLASSES[names["contempt.png"].label] == "disgust"
        and CLASSES[names["val_contempt.png"].label] == "disgust"
    )
    assert Counter(r.split for r in out.records) == {"train": 20, "validation": 3}
    assert out.label_map["7 (Contempt)"] == "disgust"
    assert len(out.skipped) == 7 and not any("Contempt" in s for s in out.skipped)


def test_affectnet_lists_in_root_and_images_relative_to_root(tmp_path):
    lines = [_line(f"9/{k}.png", k) for k in range(7)]
    _write_list(tmp_path / "validation.csv", lines, tmp_path)
    out = read_affectnet(tmp_path)
    assert [(r.split, CLASSES[r.label]) for r in out.records] == [("validation", n) for n in AFFECT_NAMES]
    assert out.records[3].path == tmp_path / "9" / "3.png"
    assert "training.csv" not in out.label_map


def test_affectnet_without_list_files_names_where_it_looked(tmp_path):
    (tmp_path / IMAGES).mkdir()
    with pytest.raises(FileNotFoundError) as err:
        read_affectnet(tmp_path)
    for path in (
        tmp_path / LISTS / "training.csv",
        tmp_path / "training.csv",
        tmp_path / LISTS / "validation.csv",
        tmp_path / "validation.csv",
    ):
        assert str(path) in str(err.value)
    with pytest.raises(FileNotFoundError, match="AffectNet root .*nowhere"):
        read_affectnet(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (_line("1/a.png", 12), r"training.csv:4: unknown expression code 12 \(expected 0-7"),
        (_line("1/a.png", -1), r"training.csv:4: unknown expression code -1"),
        (_line("1/a.png", "happy"), r"training.csv:4: cannot parse expression 'happy'"),
        (_line("1/a.png", "1.5"), r"training.csv:4: cannot parse expression '1.5'"),
        (_line("1/a.png", 1, valence="high"), r"training.csv:4: cannot parse valence 'high'"),
        (_line("1/a.png", 1, arousal="inf"), r"training.csv:4: cannot parse arousal 'inf'"),
        (_line("1/a.png", 1) + ",extra", r"training.csv:4: cannot parse: 10 fields, expected 9"),
    ],
)
def test_affectnet_bad_lines_are_errors_naming_file_and_line(tmp_path, line, message):
    lines = [_line("1/ok.png", 0), _line("1/ok2.png", 1), line]
    _write_list(tmp_path / LISTS / "training.csv", lines, tmp_path / IMAGES)
    with pytest.raises(ValueError, match=message):
        read_affectnet(tmp_path)


@pytest.mark.parametrize(
    "header",
    [HEADER.replace("expression", "emotion"), HEADER.rsplit(",", 1)[0], HEADER + ",gender", ""],
)
def test_affectnet_wrong_header_names_file_and_expected_header(tmp_path, header):
    path = _write_list(
        tmp_path / LISTS / "training.csv", [_line("1/a.png", 0)], tmp_path / IMAGES, header=header
    )
    if not header:
        path.write_text("")
    with pytest.raises(ValueError) as err:
        read_affectnet(tmp_path)
    assert str(err.value).startswith(str(path)) and f"expected the header {HEADER}" in str(err.value)


def test_affectnet_columns_in_another_order_are_read_by_name(tmp_path):
    order = [6, 0, 7, 8, 1, 2, 3, 4, 5]
    header = ",".join(COLUMNS[i] for i in order)
    fields = _line("1/a.png", 5).split(",")
    path = tmp_path / LISTS / "training.csv"
    path.parent.mkdir(parents=True)
    path.write_text(header + "\n" + ",".join(fields[i] for i in order) + "\n")
    _png(tmp_path / IMAGES / "1" / "a.png")
    (record,) = read_affectnet(tmp_path).records
    assert CLASSES[record.label] == "disgust" and record.box == (4.0, 5.0, 30.0, 40.0)
    assert record.values == (("valence", 0.5), ("arousal", -0.25)) and record.points == EXPECTED_POINTS


@pytest.mark.parametrize(
    "box",
    ["4,5,30,-1", "4,5,30,x", "nan,5,30,40", "4,5,,40"],
)
def test_affectnet_bad_boxes_are_counted_skips(tmp_path, box):
    lines = [_line(f"1/{k}.png", k) for k in range(7)] + [_line("1/bad.png", 1, box=box)]
    path = _write_list(tmp_path / LISTS / "training.csv", lines, tmp_path / IMAGES)
    out = read_affectnet(tmp_path)
    assert len(out.records) == 7
    assert out.skipped == [f"{path}:9: bad face box {box} (expected 4 finite numbers, width and height > 0)"]


def test_affectnet_many_missing_images_mean_a_wrong_root(tmp_path):
    lines = [_line(f"1/{k}.png", k % 7) for k in range(10)]
    _write_list(tmp_path / LISTS / "training.csv", lines, tmp_path / IMAGES)
    (tmp_path / IMAGES / "1" / "0.png").unlink()
    with pytest.raises(FileNotFoundError, match="1 of 10 listed images are missing"):
        read_affectnet(tmp_path)


def test_affectnet_through_read_dataset_and_bad_contempt_option(tmp_path):
    root = _affectnet(tmp_path)
    assert len(read_dataset("affectnet", root, {"contempt": "drop"}).records) == 21
    with pytest.raises(ValueError, match="AffectNet contempt option 'smirk': expected 'drop' or one of"):
        read_dataset("affectnet", root, {"contempt": "smirk"})


def test_five_points_from_68_landmarks():
    assert five_points(_landmarks()) == EXPECTED_POINTS
    shifted = five_points(_landmarks(offset=100.0))
    assert shifted[0] == (148.5, 97.0) and shifted[4] == (164.0, 128.0)
    assert five_points("") is None
    assert five_points(_landmarks() + ";1") is None
    assert five_points(_landmarks().replace("10.00", "ten", 1)) is None
    assert five_points(_landmarks().replace("20.00", "inf", 1)) is None
