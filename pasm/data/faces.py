"""Build the faces.h5 contract from reader output: decode, orient, align or resize, record status.

Already-aligned data sets (FER2013, CK+48, RAF-DB's aligned images, the demo) are only resized;
photographs go through MTCNN detection and 5-point alignment (pasm/data/align.py), so the same
alignment is applied at training and at prediction time; faces.h5 records which it was
(`pasm.data.preparation`), decided from the records' own ``aligned`` flags.

Resizing a pre-aligned image to the square `size` keeps its aspect ratio (config key
`datasets.{ds}.resize`): a square image is resized as is (bicubic); a non-square one is either
cut to its centred square (`crop`, the default: the face fills the frame as in square data sets,
like the no-face fallback `align.center_crop`) or shrunk to fit and centred on black (`pad`:
nothing is cut off; black as the alignment warp fills outside a photo). Non-square images and
images enlarged more than UPSCALE_LIMIT times are counted in the log and the attributes.

Images above `pasm.data.decode.MAX_PIXELS` (refused from their header, before decoding) and face
boxes whose crop would be larger are skipped, counted and named (attribute ``too_large``), as
undecodable files are; one absurd file never ends the data set.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from pasm.data.align import AlignSettings, FaceAligner, align_face
from pasm.data.decode import ImageTooLarge, check_pixels, decode_rgb, load_image
from pasm.data.h5store import Faces, FacesWriter, read_faces
from pasm.data.labels import CLASSES
from pasm.data.preparation import face_preparation
from pasm.data.readers.records import ReaderOutput, Record, subset_masks

log = logging.getLogger(__name__)

PRE_ALIGNED = "pre-aligned"
RESIZE = ("crop", "pad")
"""How a non-square pre-aligned image becomes square: centre crop, or fit and pad with black."""
UPSCALE_LIMIT = 4.0
"""Pre-aligned images enlarged by more than this factor are counted: they hold little detail at `size`."""


def fit_square(im: Image.Image, size: int, resize: str = "crop") -> Image.Image:
    """An RGB image as size x size: square ones resized (bicubic), others cropped or padded (see the
    module doc)."""
    if resize not in RESIZE:
        raise ValueError(f"resize must be one of {RESIZE}, got {resize!r}")
    w, h = im.size
    if w != h and resize == "crop":
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side))
    elif w != h:
        scale = size / max(w, h)
        fitted = (max(1, round(w * scale)), max(1, round(h * scale)))
        canvas = Image.new("RGB", (size, size))
        canvas.paste(
            im.resize(fitted, Image.Resampling.BICUBIC), ((size - fitted[0]) // 2, (size - fitted[1]) // 2)
        )
        return canvas
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BICUBIC)
    return im


def upscale_factor(width: int, height: int, size: int, resize: str = "crop") -> float:
    """How much fit_square enlarges a width x height image (below 1: it shrinks)."""
    return size / (min(width, height) if resize == "crop" else max(width, height))


def pixels_rgb(pixels: np.ndarray, size: int, resize: str = "crop") -> np.ndarray:
    """Convert reader-held uint8 pixels (grey (H, W) or RGB (H, W, 3)) to RGB and fit them to size x size."""
    im = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).convert("RGB")
    return np.asarray(fit_square(im, size, resize), dtype=np.uint8)


@dataclass
class ResizeNotes:
    """Counts of what resizing did to pre-aligned images: non-square ones and strong enlargements."""

    size: int
    resize: str
    non_square: list[str] = field(default_factory=list)
    upscaled: list[tuple[str, float]] = field(default_factory=list)

    def note(self, source: str, width: int, height: int) -> None:
        """Record one image's original shape."""
        if width != height:
            self.non_square.append(f"{source} ({width}x{height})")
        factor = upscale_factor(width, height, self.size, self.resize)
        if factor > UPSCALE_LIMIT:
            self.upscaled.append((f"{source} ({width}x{height})", factor))

    def log(self) -> None:
        """Warn about non-square and strongly enlarged images (counts, and the first or worst one)."""
        if self.non_square:
            verb = "centre-cropped" if self.resize == "crop" else "padded"
            log.warning(
                "%d non-square image(s) %s to %d x %d (resize: %s; first: %s)",
                len(self.non_square),
                verb,
                self.size,
                self.size,
                self.resize,
                self.non_square[0],
            )
        if self.upscaled:
            worst = max(self.upscaled, key=lambda item: item[1])
            log.warning(
                "%d image(s) enlarged more than %gx to %d px (most: %.1fx, %s)",
                len(self.upscaled),
                UPSCALE_LIMIT,
                self.size,
                worst[1],
                worst[0],
            )

    def attrs(self) -> dict:
        """Counts for faces.h5 (counts only: attributes must stay small)."""
        return {
            "resize": self.resize,
            "non_square": len(self.non_square),
            "upscaled_over_limit": len(self.upscaled),
            "upscale_limit": UPSCALE_LIMIT,
        }


def _decode_aligned(rec: Record, size: int, resize: str, notes: ResizeNotes) -> np.ndarray:
    """One pre-aligned record as size x size RGB, its original shape noted."""
    im = (
        decode_rgb(rec.path)
        if rec.pixels is None
        else Image.fromarray(np.ascontiguousarray(rec.pixels, dtype=np.uint8)).convert("RGB")
    )
    notes.note(rec.source, *im.size)
    return np.asarray(fit_square(im, size, resize), dtype=np.uint8)


def ignored_by_extension(ignored: Sequence[str]) -> dict[str, int]:
    """Counts of the entries a reader passed over, by lower-case extension ("(none)" without one,
    "(folder)" for a subfolder, which readers list with a trailing /)."""
    kinds = ("(folder)" if p.endswith("/") else Path(p).suffix.lower() or "(none)" for p in ignored)
    return dict(sorted(Counter(kinds).items()))


def box_crop(image: np.ndarray, box: Sequence[float], size: int, scale: float = 1.0) -> np.ndarray:
    """The square of side max(w, h) * scale centred on a given (x, y, w, h) face box, resized to
    size x size (bicubic); outside the photo is black, as the alignment warp fills it.

    ImageTooLarge if that square has more than MAX_PIXELS pixels (a broken box): it is cut out whole.
    """
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * scale
    cx, cy = x + w / 2.0, y + h / 2.0
    left, top = round(cx - side / 2.0), round(cy - side / 2.0)
    right, bottom = left + max(1, round(side)), top + max(1, round(side))
    check_pixels(right - left, bottom - top, f"face box {[float(v) for v in box]} (scale {scale:g})")
    crop = Image.fromarray(image).crop((left, top, right, bottom))
    return np.asarray(crop.resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8)


def _given_face(rec: Record, settings: AlignSettings) -> tuple[np.ndarray, str]:
    """A photo aligned from the data set's own landmarks, or cropped with its box: no detector runs."""
    image = load_image(rec.path)
    if rec.points is not None:
        return align_face(image, np.asarray(rec.points, dtype=np.float64), settings)[0], "landmarks"
    return box_crop(image, rec.box, settings.size, settings.scale), "box"


@dataclass
class _Tally:
    """What building faces.h5 dropped or changed, by reason (named in the log and the attributes)."""

    undecodable: list[str] = field(default_factory=list)
    too_large: list[str] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)
    status: Counter = field(default_factory=Counter)


def _chunk_faces(
    recs: Sequence[Record],
    size: int,
    resize: str,
    notes: ResizeNotes,
    settings: AlignSettings,
    aligner: "FaceAligner | None",
    tally: _Tally,
) -> list[tuple[Record, np.ndarray, str]]:
    """Faces of a few consecutive records, in record order: pre-aligned ones resized, ones with
    given landmarks or box cropped, photos detected (one MTCNN batch) and aligned."""
    made: dict[int, tuple[np.ndarray, str]] = {}
    photos, photo_of = [], []
    for i, rec in enumerate(recs):
        try:
            if rec.aligned:
                made[i] = (_decode_aligned(rec, size, resize, notes), PRE_ALIGNED)
            elif rec.points is not None or rec.box is not None:
                made[i] = _given_face(rec, settings)
            else:
                photos.append(load_image(rec.path))
                photo_of.append(i)
        except ImageTooLarge as exc:  # before ValueError, its base: refused from the size alone
            log.warning("skipped %s: image too large (%s)", rec.source, exc)
            tally.too_large.append(rec.source)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            log.warning("skipped %s: cannot decode image (%s)", rec.source, exc)
            tally.undecodable.append(rec.source)
    if photos:
        aligned, states, _ = aligner.align(photos)
        crops = iter(aligned)
        for i, state in zip(photo_of, states):
            if state == "dropped":
                log.warning("dropped %s: no face found", recs[i].source)
                tally.no_face.append(recs[i].source)
                continue
            if state == "center_crop":
                log.warning("%s: no face found, used the centre crop", recs[i].source)
            made[i] = (next(crops), state)
    return [(recs[i], *made[i]) for i in sorted(made)]


def build_faces(
    records: Sequence[Record] | ReaderOutput,
    size: int,
    attrs: dict,
    align: dict | None = None,
    device: str = "cpu",
    chunk: int = 64,
    resize: str = "crop",
    out_path: str | Path | None = None,
) -> Faces:
    """Decode (and where needed detect and align) every record and write faces.h5 at ``out_path``
    as it goes (memory holds ``chunk`` images, whatever the data set's size); returns its Faces,
    images read on demand. Without ``out_path`` the faces are returned in memory (small sets, tests).

    Undecodable files, and images above MAX_PIXELS (attribute ``too_large``), are skipped, counted
    and named in the log; images without a face follow
    align["on_no_face"] (centre crop, or drop: counted and named); files the reader passed over
    are counted by extension. Nothing is dropped silently. `resize`: see the module docstring.
    Records that carry their own landmarks or box (AffectNet) are aligned or cropped with those.
    With ``attrs["format"]`` (the reader's name) the attributes also get ``"preparation"``, the
    record of how the faces were made (`pasm.data.preparation.face_preparation`): pre-aligned when
    every record is (each reader's records are all one or the other).
    """
    if out_path is None:
        with tempfile.TemporaryDirectory() as tmp:
            faces = build_faces(records, size, attrs, align, device, chunk, resize, Path(tmp) / "faces.h5")
            faces.images = np.asarray(faces.images)
            return faces
    output = records if isinstance(records, ReaderOutput) else ReaderOutput(records=list(records))
    recs = output.records
    if resize not in RESIZE:
        raise ValueError(f"resize must be one of {RESIZE}, got {resize!r}")
    notes = ResizeNotes(size, resize)
    tally = _Tally()
    settings = AlignSettings(size=size, **{k: v for k, v in (align or {}).items() if k != "batch_size"})
    detect = any(not r.aligned and r.points is None and r.box is None for r in recs)
    aligner = (
        FaceAligner(settings, device=device, batch_size=(align or {}).get("batch_size", 16))
        if detect
        else None
    )
    if any(not r.aligned for r in recs):
        attrs = {**attrs, "alignment": settings.to_dict()}
    if "format" in attrs:
        pre_aligned = all(r.aligned for r in recs)
        attrs = {**attrs, "preparation": face_preparation(attrs["format"], size, align or {}, pre_aligned)}
    with FacesWriter(out_path, size) as out:
        bar = tqdm(total=len(recs), desc="faces", unit="img", mininterval=2.0)
        for start in range(0, len(recs), chunk):
            for rec, image, state in _chunk_faces(
                recs[start : start + chunk], size, resize, notes, settings, aligner, tally
            ):
                out.append(image, rec.label, rec.split, rec.source, state, rec.subject, dict(rec.values))
                tally.status[state] += 1
            bar.update(len(recs[start : start + chunk]))
        bar.close()
        if not len(out):
            raise ValueError("no image could be decoded")
        labels, splits = np.asarray(out.labels), np.asarray(out.splits)
        counts = {
            s: np.bincount(labels[splits == s], minlength=len(CLASSES)).tolist()
            for s in sorted(set(out.splits))
        }
        status_counts = dict(sorted((str(k), int(v)) for k, v in tally.status.items()))
        ignored = ignored_by_extension(output.ignored)
        log.info(
            "faces: %d kept %s; %d skipped by the reader, %d undecodable, %d too large, "
            "%d dropped (no face), %d not images %s",
            len(out),
            status_counts,
            len(output.skipped),
            len(tally.undecodable),
            len(tally.too_large),
            len(tally.no_face),
            len(output.ignored),
            ignored,
        )
        if output.ignored:
            log.warning(
                "%d files or folders not read (not an image extension), by extension %s (first: %s)",
                len(output.ignored),
                ignored,
                output.ignored[0],
            )
        notes.log()
        for split, c in counts.items():
            log.info("  %-12s %6d  %s", split, sum(c), dict(zip(CLASSES, c)))
        subsets = subset_masks(output, out.sources)
        for name, mask in subsets.items():
            log.info("  subset %-12s %6d", name, int(mask.sum()))
        out.finish(
            subsets,
            {
                **attrs,
                "classes": list(CLASSES),
                "image_size": size,
                "class_counts": counts,
                "status_counts": status_counts,
                "skipped": list(output.skipped) + tally.undecodable + tally.too_large,
                "skipped_by_reader": list(output.skipped),
                "undecodable": tally.undecodable,
                "too_large": tally.too_large,
                "dropped_no_face": tally.no_face,
                "label_map": output.label_map,
                "ignored_by_extension": ignored,
                **notes.attrs(),
            },
        )
    return read_faces(out_path)
