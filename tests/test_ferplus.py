"""FER+ labels for FER2013: Microsoft's majority rule, every kind of dropped row, pairing errors, kept
votes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pasm.data.labels import CLASSES
from pasm.data.readers import read_dataset
from pasm.data.readers.fer2013 import read_fer2013
from pasm.data.readers.ferplus import NO_MAJORITY, VALUE_NAMES, VOTE_COLUMNS, majority

FERPLUS_HEADER = "Usage,Image name," + ",".join(VOTE_COLUMNS)

# (Usage, Image name, votes in VOTE_COLUMNS order, what the row becomes with contempt="drop")
ROWS = [
    ("Training", "fer0000000.png", (6, 4, 0, 0, 0, 0, 0, 0, 0, 0), "neutral"),
    ("Training", "fer0000001.png", (0, 5, 3, 1, 1, 0, 0, 0, 0, 0), "happy"),
    ("Training", "fer0000002.png", (4, 4, 2, 0, 0, 0, 0, 0, 0, 0), "no majority"),
    ("Training", "fer0000003.png", (5, 1, 1, 1, 1, 1, 0, 0, 0, 0), "neutral"),  # 5 of 10, but of 5 once 1s go
    ("Training", "fer0000004.png", (0, 0, 0, 0, 0, 0, 0, 0, 8, 2), "unknown"),
    ("Training", "fer0000005.png", (0, 0, 0, 0, 0, 0, 0, 0, 0, 10), "NF"),
    ("Training", "", (0, 10, 0, 0, 0, 0, 0, 0, 0, 0), "excluded"),
    ("Training", "fer0000007.png", (0, 0, 0, 0, 0, 0, 0, 7, 3, 0), "contempt"),
    ("PublicTest", "fer0000008.png", (0, 0, 0, 8, 2, 0, 0, 0, 0, 0), "sad"),
    ("PrivateTest", "fer0000009.png", (0, 0, 0, 0, 6, 3, 1, 0, 0, 0), "angry"),
    ("PublicTest", "fer0000010.png", (0, 0, 0, 0, 0, 7, 3, 0, 0, 0), "disgust"),
    ("PrivateTest", "fer0000011.png", (0, 0, 1, 0, 0, 0, 9, 0, 0, 0), "fear"),
    ("Training", "fer0000012.png", (0, 0, 10, 0, 0, 0, 0, 0, 0, 0), "surprise"),
    ("Training", "fer0000013.png", (0, 9, 0, 0, 0, 0, 0, 0, 1, 0), "bad pixels"),
]
BLANK_AFTER = 4
"""fer2013.csv gets a blank line after its 4th data row: its rows 5.. are on lines 7.., FER+'s on 6.."""


def _pixels(seed: int) -> str:
    return " ".join(map(str, np.random.default_rng(seed).integers(0, 256, 48 * 48)))


def _fer2013(path: Path, rows=ROWS) -> Path:
    """The challenge CSV with each row's Usage; the last row's pixels are one short."""
    lines = ["emotion,pixels,Usage"]
    for i, (usage, _, _, outcome) in enumerate(rows):
        pixels = _pixels(i)
        if outcome == "bad pixels":
            pixels = pixels.rsplit(" ", 1)[0]
        lines.append(f"{i % 7},{pixels},{usage}")
        if i + 1 == BLANK_AFTER:
            lines.append("")
    path.write_text("\n".join(lines) + "\n")
    return path


def _ferplus(path: Path, rows=ROWS) -> Path:
    """fer2013new.csv as Microsoft writes it."""
    lines = [FERPLUS_HEADER] + [f"{u},{name}," + ",".join(map(str, votes)) for u, name, votes, _ in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _files(tmp_path: Path) -> tuple[Path, Path]:
    return _fer2013(tmp_path / "fer2013.csv"), _ferplus(tmp_path / "fer2013new.csv")


def _fer_line(i: int) -> int:
    """fer2013.csv line of data row i (0-based): after the header, one blank line after row BLANK_AFTER."""
    return i + 2 + (i >= BLANK_AFTER)


def test_ferplus_majority_labels_replace_fer2013s(tmp_path):
    fer, votes = _files(tmp_path)
    out = read_fer2013(fer, ferplus=votes)
    kept = [i for i, row in enumerate(ROWS) if row[3] in CLASSES]
    assert [r.source for r in out.records] == [f"{fer}:{_fer_line(i)}" for i in kept]
    assert [CLASSES[r.label] for r in out.records] == [ROWS[i][3] for i in kept]
    assert [r.split for r in out.records] == [
        "train",
        "train",
        "train",
        "PublicTest",
        "PrivateTest",
        "PublicTest",
        "PrivateTest",
        "train",
    ]
    assert all(r.pixels.shape == (48, 48) and r.aligned for r in out.records)


def test_ferplus_raw_votes_are_kept_as_values(tmp_path):
    out = read_fer2013(*_files(tmp_path))
    assert VALUE_NAMES[0] == "ferplus_neutral" and VALUE_NAMES[-1] == "ferplus_NF"
    assert out.records[1].values == tuple(
        zip(VALUE_NAMES, (0.0, 5.0, 3.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0))
    )
    assert all(len(r.values) == 10 for r in out.records)


def test_ferplus_dropped_rows_are_counted_with_their_reason(tmp_path):
    fer, votes = _files(tmp_path)
    out = read_fer2013(fer, ferplus=votes)
    assert out.skipped == [
        f"{fer}:4: no FER+ majority ({votes}:4)",
        f"{fer}:7: FER+ majority is unknown ({votes}:6)",
        f"{fer}:8: FER+ majority is NF (not a face) ({votes}:7)",
        f"{fer}:9: FER+ excluded the image (empty Image name) ({votes}:8)",
        f"{fer}:10: FER+ majority is contempt, dropped (contempt='drop') ({votes}:9)",
        f"{fer}:16: 2303 pixel values, expected 2304",
    ]
    assert out.label_map["labels"].startswith(f"FER+ majority votes of {votes}")
    assert out.label_map["happiness"] == "happy" and out.label_map["anger"] == "angry"
    assert out.label_map["contempt"] == "dropped (1 images)" and out.label_map["NF"] == "dropped (1 images)"
    assert (
        out.label_map["no majority"] == "dropped (1 images)"
        and out.label_map["Usage Training"] == "split train"
    )
    assert "0 (Angry)" not in out.label_map


def test_ferplus_contempt_mapped_into_a_class(tmp_path):
    fer, votes = _files(tmp_path)
    out = read_fer2013(fer, ferplus=votes, contempt="disgust")
    by_source = {r.source: CLASSES[r.label] for r in out.records}
    assert by_source[f"{fer}:10"] == "disgust" and len(out.records) == 9
    assert out.label_map["contempt"] == "disgust"
    assert len(out.skipped) == 5 and not any("majority is contempt" in s for s in out.skipped)


def test_without_ferplus_the_csv_labels_stay(tmp_path):
    fer, _ = _files(tmp_path)
    out = read_fer2013(fer)
    assert len(out.records) == len(ROWS) - 1
    assert [r.label for r in out.records] == [i % 7 for i in range(len(ROWS) - 1)]
    assert all(r.values == () for r in out.records) and out.label_map["0 (Angry)"] == "angry"


def test_ferplus_row_count_mismatch_names_both_files(tmp_path):
    fer = _fer2013(tmp_path / "fer2013.csv")
    votes = _ferplus(tmp_path / "fer2013new.csv", ROWS[:-1])
    with pytest.raises(ValueError) as err:
        read_fer2013(fer, ferplus=votes)
    assert str(err.value).startswith(f"{votes} has 13 data rows but {fer} has 14")


def test_ferplus_usage_mismatch_names_both_lines(tmp_path):
    rows = list(ROWS)
    rows[5] = ("PublicTest", *rows[5][1:])
    fer = _fer2013(tmp_path / "fer2013.csv")
    votes = _ferplus(tmp_path / "fer2013new.csv", rows)
    with pytest.raises(ValueError) as err:
        read_fer2013(fer, ferplus=votes)
    assert str(err.value).startswith(f"{fer}:8: Usage 'Training' differs from {votes}:7: Usage 'PublicTest'")


@pytest.mark.parametrize("vote", ["-1", "2.5", "x", ""])
def test_ferplus_bad_vote_is_an_error_naming_the_line(tmp_path, vote):
    fer, votes = _files(tmp_path)
    lines = votes.read_text().splitlines()
    fields = lines[2].split(",")
    fields[3] = vote  # happiness of data row 2
    lines[2] = ",".join(fields)
    votes.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        ValueError,
        match=rf"fer2013new.csv:3: cannot parse happiness vote '{vote}' "
        r"\(expected a non-negative integer\)",
    ):
        read_fer2013(fer, ferplus=votes)


def test_ferplus_missing_column_or_file(tmp_path):
    fer, votes = _files(tmp_path)
    votes.write_text(votes.read_text().replace(",NF", ",nonface", 1))
    with pytest.raises(
        ValueError, match=r"fer2013new.csv: missing column\(s\) \['NF'\]; expected the header Usage"
    ):
        read_fer2013(fer, ferplus=votes)
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        read_fer2013(fer, ferplus=tmp_path / "nowhere.csv")


def test_ferplus_with_the_folder_copy_is_an_error(tmp_path):
    path = tmp_path / "train" / "happy" / "a.png"
    path.parent.mkdir(parents=True)
    Image.new("L", (48, 48), 80).save(path)
    assert len(read_fer2013(tmp_path).records) == 1
    with pytest.raises(ValueError, match="image-folder copy"):
        read_fer2013(tmp_path, ferplus=_ferplus(tmp_path / "fer2013new.csv"))


def test_ferplus_through_read_dataset_and_bad_contempt(tmp_path):
    fer, votes = _files(tmp_path)
    out = read_dataset("fer2013", fer, {"ferplus": str(votes), "contempt": "drop"})
    assert len(out.records) == 8
    with pytest.raises(ValueError, match="FER\\+ contempt option 'smirk'"):
        read_dataset("fer2013", fer, {"ferplus": str(votes), "contempt": "smirk"})


def test_majority_follows_microsofts_rule():
    votes = np.array(
        [
            [6, 4, 0, 0, 0, 0, 0, 0, 0, 0],  # 6 of 10
            [5, 5, 0, 0, 0, 0, 0, 0, 0, 0],  # tie: exactly half is not a majority
            [5, 1, 1, 1, 1, 1, 0, 0, 0, 0],  # single votes removed: 5 of 5
            [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],  # nothing left
            [0, 0, 0, 0, 0, 0, 0, 3, 2, 0],  # contempt 3 of 5
            [2, 0, 0, 0, 0, 0, 0, 0, 0, 3],  # NF 3 of 5
        ]
    )
    assert majority(votes).tolist() == [0, NO_MAJORITY, 0, NO_MAJORITY, 7, 9]
