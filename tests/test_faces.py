"""faces.h5 from reader records: photos are detected and aligned, faceless and corrupt files are counted."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pasm.data.faces import build_faces
from pasm.data.readers.records import ReaderOutput, Record

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


def _release_landmarks(points5: np.ndarray) -> str:
    """68 iBUG landmarks, as AffectNet's list files give them, that reduce to these 5 points: each
    eye's six points on its centre, nose tip and mouth corners on theirs, the rest anywhere."""
    marks = np.full((68, 2), 5.0)
    marks[36:42], marks[42:48] = points5[0], points5[1]
    marks[30], marks[48], marks[54] = points5[2], points5[3], points5[4]
    return ";".join(f"{v:.6f}" for v in marks.ravel())


def test_affectnet_faces_use_the_release_landmarks_and_keep_valence_arousal(tmp_path):
    """A photo whose 68 given landmarks reduce to MTCNN's 5 points is aligned to the same face as the
    detector would (no detector runs); a line without usable landmarks is cropped with its box;
    valence and arousal become faces.h5 columns."""
    from pasm.data.align import AlignSettings, FaceAligner
    from pasm.data.decode import load_image
    from pasm.data.h5store import read_faces
    from pasm.data.readers.affectnet import COLUMNS, read_affectnet

    if not (PHOTOS / "angry.jpg").exists():
        pytest.skip("shared photographs not available")
    photo = load_image(PHOTOS / "angry.jpg")
    settings = AlignSettings(size=64)
    aligner = FaceAligner(settings)
    box, points5, _ = aligner.detect([photo])[0]
    detected = aligner.align([photo])[0][0]
    images = tmp_path / "Manually_Annotated_Images" / "1"
    images.mkdir(parents=True)
    Image.fromarray(photo).save(images / "a.png")
    Image.fromarray(photo).save(images / "b.png")
    x0, y0, x1, y1 = box
    lines = [
        f"1/a.png,{x0:.3f},{y0:.3f},{x1 - x0:.3f},{y1 - y0:.3f},{_release_landmarks(points5)},6,-0.5,0.75",
        f"1/b.png,{x0:.3f},{y0:.3f},{x1 - x0:.3f},{y1 - y0:.3f},,1,0.25,0.125",
    ]
    (tmp_path / "training.csv").write_text(",".join(COLUMNS) + "\n" + "\n".join(lines) + "\n")

    out = tmp_path / "faces.h5"
    build_faces(read_affectnet(tmp_path), 64, {"dataset": "affectnet"}, align={}, out_path=out)
    faces = read_faces(out)
    assert faces.status.tolist() == ["landmarks", "box"]
    assert faces.labels.tolist() == [0, 3]  # anger -> angry, happy -> happy
    assert np.abs(faces.images[0].astype(int) - detected.astype(int)).max() <= 1
    np.testing.assert_allclose(faces.values["valence"], [-0.5, 0.25])
    np.testing.assert_allclose(faces.values["arousal"], [0.75, 0.125])
    crop = faces.images[1]
    assert crop.shape == (64, 64, 3) and crop.std() > 10  # the face's box, not a blank
