"""`pasm predict` on videos: every Nth frame's faces classified, tracked across frames by box
overlap, their probabilities smoothed over a window of sampled frames, written as CSV.

Frames come from a video file (PyAV: its wheel carries its own FFmpeg, no system ffmpeg) or from
a folder of frame images (sorted by name, at a given frame rate). A face joins the live track
whose last box overlaps it most (IoU at least ``min_iou``, each track at most one face per
frame); otherwise it starts a new track. A track not seen for ``max_missed`` sampled frames ends.

A video that cannot be opened, or whose decoding fails (at its first frame or part-way), is a
ValueError naming it; its outputs (CSV, annotated video, plot) are written under temporary names
and renamed only on success, so a failure leaves none under its final name. A video that ends
early without an error (fewer frames decoded than its container declares, e.g. a truncated AVI)
is answered with a warning saying so.
"""

from __future__ import annotations

import csv
import logging
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from pasm.app.predict import Face, Predictor, annotated
from pasm.data.atomic import atomic_path
from pasm.data.decode import IMAGE_SUFFIXES, load_image

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})
"""Files `pasm predict` reads as videos (compared case-insensitively)."""

CONTAINER_FORMATS = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".avi": "avi",
    ".webm": "webm",
}
"""FFmpeg's container format per video suffix: an annotated video is written under a temporary
name, from which the format cannot be guessed."""


def is_video(path: str | Path) -> bool:
    """Whether a path names a video file by its extension."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its index in the video, its time in seconds and its RGB pixels."""

    index: int
    time: float
    rgb: np.ndarray


@dataclass
class DecodeCount:
    """How many frames a read_frames call decoded, and how many the video's container declares (0 when
    it does not say, and for frame folders)."""

    decoded: int = 0
    declared: int = 0

    def shortfall(self) -> str | None:
        """The note "decoded 18 of 40 frames the container declares" when fewer were decoded, else None."""
        if 0 < self.declared and self.decoded < self.declared:
            return f"decoded {self.decoded} of {self.declared} frames the container declares"
        return None


def frame_count(path: str | Path, fps: float = 25.0) -> tuple[int, float]:
    """(number of frames, if the container says; 0 otherwise) and frames per second of a video or frame
    folder; ValueError naming a video that cannot be opened."""
    path = Path(path)
    if path.is_dir():
        return len([p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]), fps
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise ValueError(f"cannot read video {path}: {exc}") from None
    with container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or fps)
        return int(stream.frames or 0), rate


def read_frames(
    path: str | Path, every: int = 1, fps: float = 25.0, count: DecodeCount | None = None
) -> Iterator[Frame]:
    """Frames 0, every, 2 every, ... of a video file or a folder of frame images (at ``fps``).

    An unreadable video, one whose decoding fails or one without a single decodable frame is a
    ValueError naming it; an unreadable frame image is skipped with a warning. ``count``, when
    given, receives the number of frames decoded and the number the container declares.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    count = DecodeCount() if count is None else count
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{path}: no frame images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for i in range(0, len(files), every):
            try:
                image = load_image(files[i])
            except ValueError as exc:
                log.warning("skipped frame %s: %s", files[i], exc)
                continue
            count.decoded += 1
            yield Frame(i, i / fps, image)
        return
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise ValueError(f"cannot read video {path}: {exc}") from None
    with container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or fps)
        count.declared = int(stream.frames or 0)
        frames = container.decode(stream)
        while True:
            i = count.decoded  # the index of the frame being decoded: 0 when the first one fails
            try:
                frame = next(frames, None)
            except av.FFmpegError as exc:
                raise ValueError(f"cannot decode video {path} at frame {i}: {exc}") from None
            if frame is None:
                break
            count.decoded += 1
            if i % every == 0:
                t = float(frame.time) if frame.time is not None else i / rate
                yield Frame(i, t, frame.to_ndarray(format="rgb24"))
        if not count.decoded:
            declared = f" (its container declares {count.declared})" if count.declared else ""
            raise ValueError(f"cannot decode video {path}: no frame could be decoded{declared}")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class Track:
    """One face followed over frames: id, last box, recent probabilities, sampled frames since last seen."""

    id: int
    box: np.ndarray
    window: deque
    missed: int = 0

    def smoothed(self) -> np.ndarray:
        """Mean of the probabilities in the window (a distribution again: rows sum to 1)."""
        return np.mean(np.stack(self.window), axis=0)


@dataclass
class Tracker:
    """Greedy IoU tracking of per-frame face boxes, with a moving average of each track's probabilities."""

    window: int = 5
    min_iou: float = 0.3
    max_missed: int = 5
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 1

    def update(self, faces: Sequence[Face]) -> list[tuple[Track, Face]]:
        """Assign this frame's faces to tracks (best overlaps first); returns (track, face) per face."""
        pairs = sorted(
            ((iou(t.box, f.box), ti, fi) for ti, t in enumerate(self.tracks) for fi, f in enumerate(faces)),
            reverse=True,
        )
        used_t, used_f, out = set(), set(), {}
        for overlap, ti, fi in pairs:
            if overlap < self.min_iou:
                break
            if ti in used_t or fi in used_f:
                continue
            used_t.add(ti)
            used_f.add(fi)
            out[fi] = self.tracks[ti]
        for fi, face in enumerate(faces):
            if fi not in out:
                track = Track(self.next_id, face.box, deque(maxlen=self.window))
                self.next_id += 1
                self.tracks.append(track)
                out[fi] = track
        for fi, face in enumerate(faces):
            track = out[fi]
            track.box, track.missed = face.box, 0
            track.window.append(face.probabilities)
        seen = {id(t) for t in out.values()}
        for track in self.tracks:
            if id(track) not in seen:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return [(out[fi], faces[fi]) for fi in range(len(faces))]


def csv_columns(classes: Sequence[str]) -> list[str]:
    """The CSV header: frame, time, track, box, the smoothed probability of each class, label."""
    return ["frame", "time", "track", "x0", "y0", "x1", "y1", *classes, "label"]


def predict_video(
    path: str | Path,
    predictor: Predictor,
    out_csv: str | Path,
    *,
    every: int = 1,
    window: int = 5,
    fps: float = 25.0,
    annotate_video: str | Path | None = None,
    plot: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Classify the faces of every ``every``-th frame, track and smooth them, write the CSV (and on
    request an annotated video and a plot of each track over time); returns counts, and a
    ``warning`` when fewer frames were decoded than the container declares.

    Every output is written under a temporary name and renamed onto its own only when all of them
    are complete: a video that fails (ValueError) leaves none of them behind."""
    tracker = Tracker(window=window)
    total, rate = frame_count(path, fps)
    rows: list[dict[str, Any]] = []
    writer_video = None
    sampled = 0
    count = DecodeCount()
    out_csv = Path(out_csv)
    with ExitStack() as outputs, open(outputs.enter_context(atomic_path(out_csv)), "w", newline="") as fh:
        writer = csv.DictWriter(fh, csv_columns(predictor.classes))
        writer.writeheader()
        bar = tqdm(
            total=-(-total // every) if total else None,
            desc=f"{Path(path).name}",
            unit="frame",
            disable=not progress,
            mininterval=1.0,
        )
        frames = read_frames(path, every, fps, count)
        try:
            for frame in frames:
                sampled += 1
                faces = predictor.predict([frame.rgb])[0]
                shown = []
                for track, face in tracker.update(faces):
                    probs = track.smoothed()
                    row = {
                        "frame": frame.index,
                        "time": round(frame.time, 4),
                        "track": track.id,
                        **dict(zip(("x0", "y0", "x1", "y1"), (round(float(v), 1) for v in face.box))),
                        **{c: round(float(p), 6) for c, p in zip(predictor.classes, probs)},
                        "label": predictor.classes[int(np.argmax(probs))],
                    }
                    writer.writerow(row)
                    rows.append(row)
                    shown.append(Face(face.box, face.detection, face.crop, probs))
                if annotate_video is not None:
                    if writer_video is None:
                        target = outputs.enter_context(atomic_path(annotate_video))
                        fmt = CONTAINER_FORMATS.get(Path(annotate_video).suffix.lower(), "mp4")
                        writer_video = _VideoWriter(target, rate / every, frame.rgb.shape, fmt)
                    writer_video.write(_annotated(frame.rgb, shown, predictor.classes))
                bar.update(1)
        finally:
            frames.close()  # the container too, when a frame's classification failed
            bar.close()
            if writer_video is not None:
                writer_video.close()
        if plot is not None:
            track_plot(rows, predictor.classes, plot, title=f"{Path(path).name}: expressions per track")
    tracks = sorted({r["track"] for r in rows})
    log.info(
        "%s: %d frames sampled, %d face rows, %d tracks -> %s", path, sampled, len(rows), len(tracks), out_csv
    )
    counts: dict[str, Any] = {"frames": sampled, "rows": len(rows), "tracks": len(tracks)}
    warning = count.shortfall()
    if warning is not None:
        log.warning("%s: %s (the file may be truncated); answered from those", path, warning)
        counts["warning"] = warning
    return counts


def _annotated(rgb: np.ndarray, faces: Sequence[Face], classes: Sequence[str]) -> np.ndarray:
    """The frame with boxes and smoothed top labels drawn, as the photo annotation draws them."""
    return np.asarray(annotated(rgb, faces, classes).convert("RGB"))


class _VideoWriter:
    """An H.264 (or MPEG-4 where H.264 is missing) video written frame by frame with PyAV."""

    def __init__(self, path: str | Path, rate: float, shape: tuple[int, ...], fmt: str | None = None) -> None:
        """A writer of `path` in container format `fmt` (FFmpeg's name; None: guessed from the suffix)."""
        from fractions import Fraction

        import av

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(path), "w", format=fmt)
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self.stream = self.container.add_stream(codec, rate=Fraction(rate).limit_denominator(1000))
        self.stream.height, self.stream.width = (
            shape[0] // 2 * 2,
            shape[1] // 2 * 2,
        )  # yuv420p needs even sides
        self.stream.pix_fmt = "yuv420p"

    def write(self, rgb: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(
            np.ascontiguousarray(rgb[: self.stream.height, : self.stream.width]), format="rgb24"
        )
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def track_plot(
    rows: Sequence[dict[str, Any]], classes: Sequence[str], path: str | Path, title: str = ""
) -> None:
    """One panel per track: each class's smoothed probability over time (stacked areas), written
    atomically (the format from the suffix of `path`, PNG without one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tracks = sorted({r["track"] for r in rows})
    fig, axes = plt.subplots(max(1, len(tracks)), 1, figsize=(8, 2.2 * max(1, len(tracks))), squeeze=False)
    for ax, track in zip(axes[:, 0], tracks):
        mine = [r for r in rows if r["track"] == track]
        t = [r["time"] for r in mine]
        ax.stackplot(t, *[[r[c] for r in mine] for c in classes], labels=list(classes))
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"track {track}")
    axes[-1, 0].set_xlabel("time (s)")
    if tracks:  # a video without faces gets empty axes, not a legend without entries
        axes[0, 0].legend(loc="upper right", fontsize=7, ncol=len(classes))
    if title:
        fig.suptitle(title, fontsize=9)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(
                tmp, dpi=100, bbox_inches="tight", format=Path(path).suffix.lstrip(".").lower() or "png"
            )
    finally:
        plt.close(fig)
