"""`pasm predict` on a video: a short clip made from a shared photo (the face moving), one track,
every sampled frame in the CSV, smoothed probabilities that sum to 1; frame folders; a bad file."""

from __future__ import annotations

import csv
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from predict_cases import photo, tiny_model_file

from pasm.app.cli import main
from pasm.data.decode import load_image
from pasm.data.labels import CLASSES

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FRAMES, FPS, SIDE = 30, 10, 320


def _clip_frames() -> list[np.ndarray]:
    """FRAMES frames of SIDE x SIDE: the photo shrunk, its face sliding right by 3 px a frame."""
    from PIL import Image

    face = Image.fromarray(load_image(photo("angry.jpg")))
    face = np.asarray(face.resize((SIDE * 2 // 3, round(face.height * SIDE * 2 / 3 / face.width))))[:SIDE, :]
    frames = []
    for k in range(FRAMES):
        canvas = np.full((SIDE, SIDE, 3), 90, np.uint8)
        x = 10 + 3 * k
        canvas[: face.shape[0], x : x + face.shape[1]] = face[:, : SIDE - x]
        frames.append(canvas)
    return frames


def _write_video(path: Path, frames: list[np.ndarray]) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = SIDE, SIDE, "yuv420p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_model_file(tmp_path_factory.mktemp("model") / "model.pt")


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_a_moving_face_is_one_track_over_every_sampled_frame(model, tmp_path, capsys, suffix):
    video = _write_video(tmp_path / f"clip{suffix}", _clip_frames())
    out = tmp_path / "out"
    code = main(
        [
            "predict",
            str(video),
            "--model",
            str(model),
            "--device",
            "cpu",
            "--every",
            "2",
            "--window",
            "3",
            "--out",
            str(out),
            "--annotate-video",
            "--plot",
        ]
    )
    assert code == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["status"] == "ok" and record["frames"] == FRAMES // 2 and record["tracks"] == 1
    rows = _rows(out / "clip.csv")
    assert [int(r["frame"]) for r in rows] == list(range(0, FRAMES, 2))  # one face in every sampled frame
    assert {r["track"] for r in rows} == {"1"}
    np.testing.assert_allclose([float(r["time"]) for r in rows], np.arange(0, FRAMES, 2) / FPS, atol=1e-6)
    probs = np.array([[float(r[c]) for c in CLASSES] for r in rows])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert all(r["label"] == CLASSES[int(np.argmax(p))] for r, p in zip(rows, probs))
    x0 = np.array([float(r["x0"]) for r in rows])
    moved = np.polyfit(np.arange(len(x0)), x0, 1)[0]  # the box follows the face: 6 px per sampled frame
    assert 4.5 < moved < 7.5, x0
    assert (out / "clip.tracks.png").stat().st_size > 0
    import av

    with av.open(str(out / "clip.annotated.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == FRAMES // 2


def test_frame_folder_and_unreadable_video(model, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for k, rgb in enumerate(_clip_frames()[:6]):
        Image.fromarray(rgb).save(folder / f"{k:04d}.png")
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    out = tmp_path / "out"
    code = main(
        [
            "predict",
            str(folder),
            str(bad),
            "--frames",
            "--fps",
            "5",
            "--window",
            "1",
            "--model",
            str(model),
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert code == 2  # one input could not be read; the other was answered
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["status"] for r in records] == ["ok", "error"]
    assert "broken.mp4" in records[1]["error"]
    rows = _rows(out / "frames.csv")
    assert [float(r["time"]) for r in rows] == [k / 5 for k in range(6)]
