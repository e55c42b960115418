"""Build the faces.h5 contract from reader records: decode, orient, convert to RGB, resize."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from pasm.h5store import Faces
from pasm.labels import CLASSES
from pasm.readers.folder import Record

log = logging.getLogger(__name__)


def load_rgb(path: str | Path, size: int) -> np.ndarray:
    """Decode one image, apply its EXIF orientation, convert to RGB and resize to size x size."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BICUBIC)
        return np.asarray(im, dtype=np.uint8)


def pixels_rgb(pixels: np.ndarray, size: int) -> np.ndarray:
    """Convert reader-held uint8 pixels (grey (H, W) or RGB (H, W, 3)) to RGB and resize to size x size."""
    im = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).convert("RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(im, dtype=np.uint8)


def build_faces(records: Sequence[Record], size: int, status: str, attrs: dict) -> Faces:
    """Decode every record into one Faces array; undecodable files are skipped, counted and logged."""
    images, kept, skipped = [], [], []
    for rec in tqdm(records, desc="faces", unit="img", mininterval=2.0):
        try:
            images.append(load_rgb(rec.path, size) if rec.pixels is None else pixels_rgb(rec.pixels, size))
            kept.append(rec)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            log.warning("skipped %s: cannot decode image (%s)", rec.source, exc)
            skipped.append(rec.source)
    if not kept:
        raise ValueError("no image could be decoded")
    labels = np.array([r.label for r in kept], dtype=np.int64)
    splits = np.array([r.split for r in kept])
    counts = {s: np.bincount(labels[splits == s], minlength=len(CLASSES)).tolist() for s in sorted(set(splits))}
    log.info("faces: %d images kept, %d skipped as undecodable", len(kept), len(skipped))
    for split, c in counts.items():
        log.info("  %-10s %6d  %s", split, sum(c), dict(zip(CLASSES, c)))
    return Faces(
        images=np.stack(images),
        labels=labels,
        splits=splits,
        sources=np.array([r.source for r in kept]),
        status=np.full(len(kept), status),
        attrs={**attrs, "classes": list(CLASSES), "image_size": size, "skipped": skipped, "class_counts": counts},
    )
