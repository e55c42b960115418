"""`pasm predict` on real photographs with a real (tiny, untrained) model file, and the stored face
preparation."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from predict_cases import REPO, SIZE, photo, tiny_model_file

from pasm.app import cli
from pasm.app.predict import Predictor, find_images, to_grey
from pasm.data.align import align_face
from pasm.data.decode import load_image
from pasm.data.labels import CLASSES
from pasm.data.preparation import face_preparation, stored_preparation

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory) -> Path:
    return tiny_model_file(tmp_path_factory.mktemp("colour") / "model.pt", fmt="demo")


@pytest.fixture(scope="module")
def grey_model(tmp_path_factory) -> Path:
    return tiny_model_file(tmp_path_factory.mktemp("grey") / "model.pt", fmt="fer2013")


def _records(text: str) -> list[dict]:
    """Every stdout line must be one JSON object."""
    return [json.loads(line) for line in text.splitlines()]


# --- the alignment record stored in model files ---------------------------------------------------


def test_card_says_how_training_faces_were_made():
    fer = face_preparation("fer2013", 48, {}, pre_aligned=True)
    assert fer["grey"] is True and fer["source"] == "pre-aligned" and fer["image_size"] == 48
    assert fer["settings"]["template"] == "fer2013" and fer["settings"]["size"] == 48  # FER2013's own framing

    raf = face_preparation("rafdb", 100, {"scale": 1.2, "min_face": 30, "batch_size": 4}, pre_aligned=False)
    assert raf["grey"] is False and raf["source"] == "aligned"
    assert (
        raf["settings"]["scale"] == 1.2
        and raf["settings"]["min_face"] == 30
        and "batch_size" not in raf["settings"]
    )

    ck = face_preparation("ckplus", 64, {}, pre_aligned=False)
    assert ck["grey"] is True and ck["source"] == "aligned" and ck["settings"]["template"] == "fer-v1"
    ck48 = face_preparation("ckplus", 48, {}, pre_aligned=True)
    assert ck48["source"] == "pre-aligned" and ck48["settings"]["template"] == "fer2013"
    demo = face_preparation("demo", 64, {}, pre_aligned=True)
    assert (
        demo["grey"] is False and demo["source"] == "pre-aligned" and demo["settings"]["template"] == "fer-v1"
    )
    assert json.loads(json.dumps(raf)) == raf  # stored as plain values


def test_old_model_files_get_a_logged_guess(caplog):
    with caplog.at_level(logging.WARNING, logger="pasm"):
        fer = stored_preparation({"image_size": 48, "alignment": {"format": "fer2013", "image_size": 48}})
        demo = stored_preparation({"image_size": 64, "alignment": {"format": "demo", "image_size": 64}})
    assert fer["grey"] is True and demo["grey"] is False
    assert fer["settings"]["size"] == 48 and fer["settings"]["template"] == "fer2013"
    assert demo["settings"]["size"] == 64 and demo["settings"]["template"] == "fer-v1"
    assert sum("no complete alignment record" in r.getMessage() for r in caplog.records) == 2
    caplog.clear()
    complete = face_preparation("demo", 64, {}, pre_aligned=True)
    assert stored_preparation({"image_size": 64, "alignment": complete})["grey"] is False
    assert not caplog.records


# --- prediction -----------------------------------------------------------------------------------


def test_one_photo_gives_one_face(colour_model, capsys):
    angry = photo("angry.jpg")
    code = cli.main(["predict", str(angry), "--model", str(colour_model), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    records = _records(out)
    assert len(records) == 1
    rec = records[0]
    assert rec["status"] == "ok" and rec["file"] == str(angry) and rec["face"] == 0
    assert list(rec["probabilities"]) == list(CLASSES)
    assert sum(rec["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert rec["label"] == max(rec["probabilities"], key=rec["probabilities"].get)
    h, w = load_image(angry).shape[:2]
    x0, y0, x1, y1 = rec["box"]
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert (x1 - x0) * (y1 - y0) > 0.05 * w * h  # the photo's subject, not a speck


def test_folder_with_face_no_face_and_corrupt_file(colour_model, tmp_path):
    folder = tmp_path / "inputs"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(photo("angry.jpg"), folder / "angry.jpg")
    shutil.copy(photo("sad_hand_over_mouth.jpg"), folder / "sub" / "SAD.JPG")  # recursion, upper-case suffix
    ramp = np.linspace(0, 255, 240, dtype=np.float64)
    gradient = np.stack([np.add.outer(ramp[:200] * 0.5, ramp * 0.5)] * 3, axis=2).astype(np.uint8)
    Image.fromarray(gradient).save(folder / "gradient.png")
    (folder / "x.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (folder / "notes.txt").write_text("not an image")
    annotated = tmp_path / "annotated"

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pasm.app.cli",
            "predict",
            str(folder),
            "--model",
            str(colour_model),
            "--device",
            "cpu",
            "--annotate",
            str(annotated),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 2, proc.stderr
    by_file: dict[str, list[dict]] = {}
    for rec in _records(proc.stdout):
        by_file.setdefault(Path(rec["file"]).name, []).append(rec)
    assert sorted(by_file) == ["SAD.JPG", "angry.jpg", "gradient.png", "x.jpg"]
    for name in ("angry.jpg", "SAD.JPG"):
        assert [r["status"] for r in by_file[name]] == ["ok"]
        assert sum(by_file[name][0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert by_file["gradient.png"] == [{"file": str(folder / "gradient.png"), "status": "no_face"}]
    (error,) = by_file["x.jpg"]
    assert error["status"] == "error" and str(folder / "x.jpg") in error["error"]
    assert error["error"] in proc.stderr

    drawn = np.asarray(Image.open(annotated / "inputs" / "angry.jpg").convert("RGB")).astype(int)
    original = load_image(folder / "angry.jpg").astype(int)
    assert drawn.shape == original.shape and np.abs(drawn - original).max() > 100  # the box is drawn
    assert (annotated / "inputs" / "sub" / "SAD.JPG").is_file() and (
        annotated / "inputs" / "gradient.png"
    ).is_file()
    assert not (annotated / "inputs" / "x.jpg").exists()


def test_grey_models_see_grey_faces(colour_model, grey_model, tmp_path):
    image = load_image(photo("angry.jpg"))
    colour, grey = Predictor(colour_model, "cpu"), Predictor(grey_model, "cpu")
    assert (colour.grey, grey.grey) == (False, True)
    assert (colour.settings.template, grey.settings.template) == ("fer-v1", "fer2013")
    ((c_face,),) = colour.predict([image])
    ((g_face,),) = grey.predict([image])
    assert c_face.crop.shape == g_face.crop.shape == (SIZE, SIZE, 3)
    assert np.ptp(c_face.crop.astype(int), axis=2).max() > 20  # the colour crop keeps colour
    _, landmarks, _ = grey.aligner.detect([image])[0]
    aligned = align_face(image, landmarks, grey.settings)[0]
    assert np.ptp(aligned.astype(int), axis=2).max() > 20
    assert np.array_equal(g_face.crop, to_grey(aligned[None])[0])  # the stored alignment, then grey
    assert np.ptp(g_face.crop.astype(int), axis=2).max() == 0
    np.testing.assert_allclose(g_face.probabilities, grey.classify(g_face.crop[None])[0], atol=1e-9)
    np.testing.assert_allclose(c_face.box, g_face.box)

    # an older model file (format and size only) is treated as grey too, from its format
    old = tiny_model_file(tmp_path / "old.pt", alignment={"format": "fer2013", "image_size": SIZE})
    assert Predictor(old, "cpu").grey is True


def test_find_images_recurses_and_filters(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    names = ("a/one.JPEG", "a/b/two.webp", "a/b/three.Bmp", "a/four.GIF", "a/skip.heic", "a/b/readme.md")
    for name in names:
        (tmp_path / name).write_bytes(b"")
    named = tmp_path / "a" / "skip.heic"  # a file named on the command line is always tried
    found = find_images([tmp_path / "a", named, tmp_path / "a" / "one.JPEG"])
    assert [str(i.path.relative_to(tmp_path)) for i in found] == [
        "a/b/three.Bmp",
        "a/b/two.webp",
        "a/four.GIF",
        "a/one.JPEG",
        "a/skip.heic",
    ]


# --- files given as --model that are not pasm model files -----------------------------------------


def _bad_model_files(folder: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """Files often given as --model by mistake, each with the words its one-line message must hold."""
    import argparse

    import torch

    from pasm.data.h5store import Faces, write_faces

    files = {}
    random_bytes = folder / "random.pt"
    random_bytes.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    files["random bytes"] = random_bytes, "unknown content starting with the bytes"
    faces = folder / "faces.h5"
    write_faces(
        faces,
        Faces(
            images=np.zeros((1, 4, 4, 3), np.uint8),
            labels=np.zeros(1, np.int64),
            splits=np.array(["train"]),
            sources=np.array(["a.png"]),
            status=np.array(["pre-aligned"]),
        ),
    )
    files["faces.h5"] = faces, "an HDF5 file"
    empty = folder / "empty.pt"
    empty.write_bytes(b"")
    files["empty"] = empty, "an empty file"
    truncated = folder / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    files["truncated"] = truncated, "a damaged or truncated zip archive"
    weights = folder / "resnet18.pth"
    torch.save({"conv1.weight": torch.zeros(2), "fc.bias": torch.zeros(7)}, weights)
    files["bare state_dict"] = (
        weights,
        (
            "without pasm's format, meta and state_dict keys, e.g. ImageNet weights "
            "or a bare state_dict; it holds conv1.weight, fc.bias"
        ),
    )
    objects = folder / "objects.pt"
    torch.save(
        argparse.Namespace(model=1), objects
    )  # loading it would need weights_only=False: code execution
    files["pickled object"] = objects, "objects other than tensors and plain values; not loaded"
    blob = torch.load(good, weights_only=True)
    del blob["meta"]["classes"]
    no_classes = folder / "no-classes.pt"
    torch.save(blob, no_classes)
    files["meta without classes"] = no_classes, "is not a complete pasm model file (its meta lacks 'classes'"
    return files


@pytest.mark.parametrize(
    "case",
    [
        "random bytes",
        "faces.h5",
        "empty",
        "truncated",
        "bare state_dict",
        "pickled object",
        "meta without classes",
    ],
)
def test_a_file_that_is_not_a_model_gets_one_line_naming_it(colour_model, tmp_path, capsys, case):
    path, what = _bad_model_files(tmp_path, colour_model)[case]
    image = tmp_path / "face.png"
    Image.new("RGB", (8, 8)).save(image)
    code = cli.main(["predict", str(image), "--model", str(path), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"pasm predict: {path} ") and what in err, err
    assert len(err.strip().splitlines()) == 1 and "weights_only" not in err and "Traceback" not in err


# --- one bad input never ends the run: broken links, failing photos, failed annotations -----------


def _gradient(path: Path, width: int = 40) -> Path:
    """A small faceless photo."""
    ramp = np.linspace(0, 255, width, dtype=np.uint8)
    Image.fromarray(np.stack([np.tile(ramp, (30, 1))] * 3, axis=2)).save(path)
    return path


def test_a_symlink_loop_named_on_the_command_line_is_answered_and_so_is_the_rest(
    colour_model, tmp_path, capsys
):
    loop = tmp_path / "loop.jpg"
    os.symlink(tmp_path / "loop2.jpg", loop)
    os.symlink(loop, tmp_path / "loop2.jpg")
    after = _gradient(tmp_path / "after.png")
    code = cli.main(["predict", str(loop), str(after), "--model", str(colour_model), "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 2
    assert _records(captured.out) == [
        {"file": str(loop), "status": "error", "error": f"{loop}: broken symbolic link (a loop of links)"},
        {"file": str(after), "status": "no_face"},
    ]
    assert (
        f"{loop}: broken symbolic link" in captured.err and "1 of 2 files could not be read" in captured.err
    )


def test_broken_links_in_a_folder_each_get_an_error_record(colour_model, tmp_path, capsys):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    _gradient(folder / "fine.png")
    os.symlink(tmp_path / "deleted.jpg", folder / "gone.jpg")  # two links to one missing photo: two records
    os.symlink(tmp_path / "deleted.jpg", folder / "sub" / "also-gone.JPG")
    os.symlink(folder / "loop-b.png", folder / "loop-a.png")
    os.symlink(folder / "loop-a.png", folder / "loop-b.png")
    os.symlink(tmp_path / "deleted.txt", folder / "notes.txt")  # not named like a photo: passed over
    os.symlink("user@host.4242:1700000000", folder / ".#fine.png")  # an editor's lock link: passed over
    code = cli.main(["predict", str(folder), "--model", str(colour_model), "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 2
    missing = f"its target {tmp_path / 'deleted.jpg'} does not exist"
    assert _records(captured.out) == [
        {"file": str(folder / "fine.png"), "status": "no_face"},
        {
            "file": str(folder / "gone.jpg"),
            "status": "error",
            "error": f"{folder / 'gone.jpg'}: broken symbolic link ({missing})",
        },
        {
            "file": str(folder / "loop-a.png"),
            "status": "error",
            "error": f"{folder / 'loop-a.png'}: broken symbolic link (a loop of links)",
        },
        {
            "file": str(folder / "loop-b.png"),
            "status": "error",
            "error": f"{folder / 'loop-b.png'}: broken symbolic link (a loop of links)",
        },
        {
            "file": str(folder / "sub" / "also-gone.JPG"),
            "status": "error",
            "error": f"{folder / 'sub' / 'also-gone.JPG'}: broken symbolic link ({missing})",
        },
    ]
    assert "4 of 5 files could not be read" in captured.err


class _FailingPredictor:
    """Finds no face, except that it fails on any batch holding a photo 13 pixels wide."""

    classes = list(CLASSES)

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, images):
        self.calls.append(len(images))
        if any(image.shape[1] == 13 for image in images):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return [[] for _ in images]


def test_a_photo_whose_detection_fails_is_answered_alone(tmp_path):
    import io

    from pasm.app.predict import Input, predict_files

    paths = [
        _gradient(tmp_path / "a.png"),
        _gradient(tmp_path / "bad.png", width=13),
        _gradient(tmp_path / "c.png"),
    ]
    out, predictor = io.StringIO(), _FailingPredictor()
    unreadable = predict_files(
        [Input(p, Path(p.name)) for p in paths], predictor, out, tmp_path / "annotated"
    )
    assert unreadable == 1 and predictor.calls == [3, 1, 1, 1]  # the batch, then photo by photo
    assert _records(out.getvalue()) == [
        {"file": str(paths[0]), "status": "no_face"},
        {
            "file": str(paths[1]),
            "status": "error",
            "error": f"cannot classify the faces of {paths[1]}: RuntimeError: CUDA error: an illegal memory "
            "access was encountered",
        },
        {"file": str(paths[2]), "status": "no_face"},
    ]
    assert sorted(p.name for p in (tmp_path / "annotated").iterdir()) == ["a.png", "c.png"]


def test_a_failed_annotation_leaves_no_file_under_its_name(tmp_path, monkeypatch, caplog):
    import io

    from pasm.app.predict import Input, predict_files

    def half_written(self, fp, format=None, **params):
        Path(fp).write_bytes(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    photo_path = _gradient(tmp_path / "a.png")
    monkeypatch.setattr(Image.Image, "save", half_written)
    out = io.StringIO()
    with caplog.at_level(logging.WARNING, logger="pasm"):
        unreadable = predict_files(
            [Input(photo_path, Path("a.png"))], _FailingPredictor(), out, tmp_path / "drawn"
        )
    assert unreadable == 0 and _records(out.getvalue()) == [{"file": str(photo_path), "status": "no_face"}]
    assert "No space left on device" in caplog.text
    assert list((tmp_path / "drawn").iterdir()) == []  # neither a half-written photo nor a temporary file
