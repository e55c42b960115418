"""Build the faces.h5 contract from reader output: decode, orient, align or resize, record status.

Already-aligned data sets (FER2013, CK+48, RAF-DB's aligned images, the demo) are only resized;
photographs go through MTCNN detection and 5-point alignment (pasm/align.py), so the same
alignment is applied at training and at prediction time.

Resizing a pre-aligned image to the square `size` keeps its aspect ratio (config key
`datasets.{ds}.resize`): a square image is resized as is (bicubic); a non-square one is either
cut to its centred square (`crop`, the default: the face fills the frame as in square data sets,
like the no-face fallback `align.center_crop`) or shrunk to fit and centred on black (`pad`:
nothing is cut off; black as the alignment warp fills outside a photo). Non-square images and
images enlarged more than UPSCALE_LIMIT times are counted in the log and the attributes.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from pasm.data.align import AlignSettings, FaceAligner, decode_rgb, load_image
from pasm.data.h5store import Faces
from pasm.data.labels import CLASSES
from pasm.data.readers.records import Record, ReaderOutput, subset_masks

log = logging.getLogger(__name__)

PRE_ALIGNED = "pre-aligned"
RESIZE = ("crop", "pad")
"""How a non-square pre-aligned image becomes square: centre crop, or fit and pad with black."""
UPSCALE_LIMIT = 4.0
"""Pre-aligned images enlarged by more than this factor are counted: they hold little detail at `size`."""


def fit_square(im: Image.Image, size: int, resize: str = "crop") -> Image.Image:
    """An RGB image as size x size: square ones resized (bicubic), others cropped or padded (see the module doc)."""
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
        canvas.paste(im.resize(fitted, Image.Resampling.BICUBIC), ((size - fitted[0]) // 2, (size - fitted[1]) // 2))
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
            log.warning("%d non-square image(s) %s to %d x %d (resize: %s; first: %s)",
                        len(self.non_square), verb, self.size, self.size, self.resize, self.non_square[0])
        if self.upscaled:
            worst = max(self.upscaled, key=lambda item: item[1])
            log.warning("%d image(s) enlarged more than %gx to %d px (most: %.1fx, %s)",
                        len(self.upscaled), UPSCALE_LIMIT, self.size, worst[1], worst[0])

    def attrs(self) -> dict:
        """Counts for faces.h5 (counts only: attributes must stay small)."""
        return {"resize": self.resize, "non_square": len(self.non_square),
                "upscaled_over_limit": len(self.upscaled), "upscale_limit": UPSCALE_LIMIT}


def _decode_aligned(rec: Record, size: int, resize: str, notes: ResizeNotes) -> np.ndarray:
    """One pre-aligned record as size x size RGB, its original shape noted."""
    im = decode_rgb(rec.path) if rec.pixels is None else Image.fromarray(
        np.ascontiguousarray(rec.pixels, dtype=np.uint8)).convert("RGB")
    notes.note(rec.source, *im.size)
    return np.asarray(fit_square(im, size, resize), dtype=np.uint8)


def ignored_by_extension(ignored: Sequence[str]) -> dict[str, int]:
    """Counts of the entries a reader passed over, by lower-case extension ("(none)" without one,
    "(folder)" for a subfolder, which readers list with a trailing /)."""
    kinds = ("(folder)" if p.endswith("/") else Path(p).suffix.lower() or "(none)" for p in ignored)
    return dict(sorted(Counter(kinds).items()))


def build_faces(
    records: Sequence[Record] | ReaderOutput,
    size: int,
    attrs: dict,
    align: dict | None = None,
    device: str = "cpu",
    chunk: int = 64,
    resize: str = "crop",
) -> Faces:
    """Decode (and where needed detect and align) every record into one Faces array.

    Undecodable files are skipped, counted and named in the log; images without a face follow
    align["on_no_face"] (centre crop, or drop: counted and named); files the reader passed over
    are counted by extension. Nothing is dropped silently. `resize`: see the module docstring.
    """
    output = records if isinstance(records, ReaderOutput) else ReaderOutput(records=list(records))
    recs = output.records
    images: list[np.ndarray | None] = [None] * len(recs)
    status = [PRE_ALIGNED] * len(recs)
    undecodable, no_face = [], []
    if resize not in RESIZE:
        raise ValueError(f"resize must be one of {RESIZE}, got {resize!r}")
    notes = ResizeNotes(size, resize)
    todo = [i for i, r in enumerate(recs) if not r.aligned]
    for i, rec in enumerate(tqdm(recs, desc="decode", unit="img", mininterval=2.0)):
        if not rec.aligned:
            continue
        try:
            images[i] = _decode_aligned(rec, size, resize, notes)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            log.warning("skipped %s: cannot decode image (%s)", rec.source, exc)
            undecodable.append(rec.source)
    if todo:
        settings = AlignSettings(size=size, **{k: v for k, v in (align or {}).items() if k != "batch_size"})
        aligner = FaceAligner(settings, device=device, batch_size=(align or {}).get("batch_size", 16))
        bar = tqdm(total=len(todo), desc="detect+align", unit="img", mininterval=2.0)
        for start in range(0, len(todo), chunk):
            part, photos = [], []
            for i in todo[start : start + chunk]:
                try:
                    photos.append(load_image(recs[i].path))
                    part.append(i)
                except ValueError as exc:
                    log.warning("skipped %s: %s", recs[i].source, exc)
                    undecodable.append(recs[i].source)
            aligned, st, _ = aligner.align(photos) if photos else (np.zeros((0, size, size, 3), np.uint8), [], [])
            rows = iter(aligned)
            for i, s in zip(part, st):
                status[i] = s
                if s == "dropped":
                    log.warning("dropped %s: no face found", recs[i].source)
                    no_face.append(recs[i].source)
                else:
                    images[i] = next(rows)
                    if s == "center_crop":
                        log.warning("%s: no face found, used the centre crop", recs[i].source)
            bar.update(len(todo[start : start + chunk]))
        bar.close()
        attrs = {**attrs, "alignment": settings.to_dict()}
    keep = [i for i in range(len(recs)) if images[i] is not None]
    if not keep:
        raise ValueError("no image could be decoded")
    kept = [recs[i] for i in keep]
    labels = np.array([r.label for r in kept], dtype=np.int64)
    splits = np.array([r.split for r in kept])
    sources = np.array([r.source for r in kept])
    kept_status = np.array([status[i] for i in keep])
    counts = {s: np.bincount(labels[splits == s], minlength=len(CLASSES)).tolist() for s in sorted(set(splits))}
    status_counts = {str(s): int((kept_status == s).sum()) for s in sorted(set(kept_status))}
    ignored = ignored_by_extension(output.ignored)
    log.info(
        "faces: %d kept %s; %d skipped by the reader, %d undecodable, %d dropped (no face), %d not images %s",
        len(kept), status_counts, len(output.skipped), len(undecodable), len(no_face), len(output.ignored), ignored,
    )
    if output.ignored:
        log.warning("%d files or folders not read (not an image extension), by extension %s (first: %s)",
                    len(output.ignored), ignored, output.ignored[0])
    notes.log()
    for split, c in counts.items():
        log.info("  %-12s %6d  %s", split, sum(c), dict(zip(CLASSES, c)))
    subsets = subset_masks(output, sources.tolist())
    for name, mask in subsets.items():
        log.info("  subset %-12s %6d", name, int(mask.sum()))
    return Faces(
        images=np.stack([images[i] for i in keep]),
        labels=labels,
        splits=splits,
        sources=sources,
        status=kept_status,
        subsets=subsets,
        subjects=np.array([r.subject for r in kept]),
        attrs={
            **attrs, "classes": list(CLASSES), "image_size": size, "class_counts": counts,
            "status_counts": status_counts, "skipped": list(output.skipped) + undecodable,
            "skipped_by_reader": list(output.skipped), "undecodable": undecodable, "dropped_no_face": no_face,
            "label_map": output.label_map, "ignored_by_extension": ignored, **notes.attrs(),
        },
    )
