"""faces.h5 from reader records: photos are detected and aligned, faceless and corrupt files are counted."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pasm.data.faces import build_faces
from pasm.data.readers.records import Record, ReaderOutput

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "images" / "faces"


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def mixed(tmp_path):
    if not (PHOTOS / "angry.jpg").exists():
        pytest.skip("shared photographs not available")
    gradient = tmp_path / "gradient.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 200, dtype=np.uint8), (150, 1))).save(gradient)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff not a jpeg")
    small = tmp_path / "aligned.png"
    Image.new("RGB", (30, 30), (10, 20, 30)).save(small)
    recs = [
        Record(str(PHOTOS / "angry.jpg"), "test", 0, path=PHOTOS / "angry.jpg", aligned=False),
        Record(str(gradient), "test", 6, path=gradient, aligned=False),
        Record(str(corrupt), "test", 4, path=corrupt, aligned=False),
        Record(str(small), "train", 3, path=small, aligned=True),
    ]
    return ReaderOutput(records=recs, subsets={"photos": [0, 1, 2]}, skipped=["gone.jpg: image not found"])


def test_photos_are_aligned_and_fallbacks_recorded(mixed):
    faces = build_faces(mixed, 64, {"dataset": "x"}, align={"on_no_face": "center_crop"})
    assert faces.images.shape == (3, 64, 64, 3)
    assert faces.status.tolist() == ["detected", "center_crop", "pre-aligned"]
    assert faces.attrs["undecodable"] == [mixed.records[2].source]
    assert faces.attrs["skipped_by_reader"] == ["gone.jpg: image not found"]
    assert faces.attrs["alignment"]["template"] == "fer-v1" and faces.attrs["alignment"]["size"] == 64
    assert faces.subsets["photos"].tolist() == [True, True, False]
    assert (faces.images[2] == (10, 20, 30)).all()  # the aligned one is only resized


def test_drop_policy_counts_faceless_images(mixed):
    faces = build_faces(mixed, 32, {}, align={"on_no_face": "drop"})
    assert faces.status.tolist() == ["detected", "pre-aligned"]
    assert faces.attrs["dropped_no_face"] == [mixed.records[1].source]
    assert faces.labels.tolist() == [0, 3]
