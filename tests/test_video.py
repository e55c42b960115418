"""`pasm predict` on a video: a short clip made from a shared photo (the face moving), one track,
every sampled frame in the CSV, smoothed probabilities that sum to 1; frame folders; a bad file;
damaged videos (cut short, a loop of links) answered one by one, without partial outputs."""

from __future__ import annotations

import csv
import json
import logging
import os
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
    assert "warning" not in record  # every frame the container declares was decoded
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


# --- damaged videos: each is answered, none leaves a partial output, a short one says so ----------


def _plain_frames(n: int, side: int = 64) -> list[np.ndarray]:
    """n small frames without a face (a sliding colour ramp): quick to encode, detect and classify."""
    y, x = np.mgrid[:side, :side]
    return [
        np.stack([(x * 4 + 5 * k) % 256, (y * 4) % 256, np.full_like(x, 128)], -1).astype(np.uint8)
        for k in range(n)
    ]


def _encode(path: Path, frames: list[np.ndarray], codec: str = "mpeg4", options: dict | None = None) -> bytes:
    """Write frames as a video (container from the suffix, FFmpeg muxer options); returns its bytes."""
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV has no {codec} encoder")
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=Fraction(FPS))
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


def _fast_start_mp4_cut(path: Path, frames: list[np.ndarray], packet: int) -> Path:
    """An H.264 MP4 with its index first (fast start) whose bytes end half-way through a packet.

    The packets are sized by demuxing the complete file; the file is then cut in the middle of
    packet number `packet` (0: the first frame cannot be decoded)."""
    import av

    data = _encode(path, frames, "libx264", {"movflags": "faststart"})
    assert data.index(b"moov") < data.index(b"mdat")  # the index first, the frames after it
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    pos, size = packets[packet]
    path.write_bytes(data[: pos + size // 2])
    return path


def _avi_cut(path: Path, frames: list[np.ndarray], keep: int) -> Path:
    """An MPEG-4 AVI that ends cleanly after its first `keep` frame chunks (its header still
    declares every frame): a file cut short at a chunk boundary, as a copy that stopped."""
    import struct

    data = _encode(path, frames)
    pos = data.index(b"movi") + 4
    for _ in range(keep):
        assert data[pos + 2 : pos + 4] == b"dc", data[pos : pos + 4]  # a compressed video frame chunk
        size = struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        pos += 8 + size + (size & 1)
    path.write_bytes(data[:pos])
    return path


def _predict(paths: list[Path], model: Path, out: Path, *extra: str) -> int:
    return main(
        ["predict", *map(str, paths), "--model", str(model), "--device", "cpu", "--out", str(out), *extra]
    )


def test_a_video_whose_first_frame_cannot_be_decoded_does_not_stop_the_batch(model, tmp_path, capsys):
    truncated = _fast_start_mp4_cut(tmp_path / "truncated.mp4", _plain_frames(12), packet=0)
    loop = tmp_path / "loop.mp4"
    os.symlink(tmp_path / "loop2.mp4", loop)
    os.symlink(loop, tmp_path / "loop2.mp4")
    good = tmp_path / "good.avi"
    _encode(good, _plain_frames(4))
    code = _predict([truncated, loop, good], model, tmp_path / "out")
    captured = capsys.readouterr()
    assert code == 2  # two inputs could not be read; every one was answered
    records = [json.loads(line) for line in captured.out.strip().splitlines()]
    assert [(Path(r["file"]).name, r["status"]) for r in records] == [
        ("truncated.mp4", "error"),
        ("loop.mp4", "error"),
        ("good.avi", "ok"),
    ]
    assert records[0]["error"].startswith(f"cannot decode video {truncated} at frame 0: ")
    assert records[1]["error"] == f"{loop}: broken symbolic link (a loop of links)"
    assert records[2]["frames"] == 4 and "warning" not in records[2]
    assert "2 of 3 files could not be read" in captured.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.csv"]


def test_a_video_failing_part_way_leaves_no_output_under_its_name(model, tmp_path, capsys):
    video = _fast_start_mp4_cut(tmp_path / "clip.mp4", _plain_frames(30), packet=12)
    out = tmp_path / "out"
    code = _predict([video], model, out, "--annotate-video", "--plot")
    assert code == 2
    (record,) = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert record["status"] == "error"
    assert list(out.iterdir()) == []  # no CSV, annotated video, plot nor temporary file
    assert record["error"].startswith(f"cannot decode video {video} at frame ")
    assert int(record["error"].split(" at frame ")[1].split(":")[0]) > 0  # frames were read, then it failed


def test_a_failing_plot_leaves_neither_plot_nor_csv_nor_video(model, tmp_path, capsys, monkeypatch):
    import matplotlib.figure

    def half_written(self, fname, **kwargs):
        Path(fname).write_bytes(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", half_written)
    video = tmp_path / "clip.avi"
    _encode(video, _plain_frames(6))
    out = tmp_path / "out"
    code = _predict([video], model, out, "--annotate-video", "--plot")
    assert code == 2
    (record,) = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert record["status"] == "error" and "No space left on device" in record["error"]
    assert list(out.iterdir()) == []


def test_a_truncated_avi_says_how_many_of_its_frames_were_decoded(model, tmp_path, capsys, caplog):
    video = _avi_cut(tmp_path / "short.avi", _plain_frames(40), keep=18)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        code = _predict([video], model, out)
    assert code == 0  # what could be decoded is answered, with a warning
    (record,) = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert record["status"] == "ok" and record["frames"] == 18
    assert record["warning"] == "decoded 18 of 40 frames the container declares"
    assert f"{video}: decoded 18 of 40 frames the container declares" in caplog.text
    assert (out / "short.csv").is_file()
