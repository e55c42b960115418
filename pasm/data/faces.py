"""Build the faces.h5 contract from reader output: decode, orient, align or resize, record status.

Already-aligned data sets (FER2013, CK+48, RAF-DB's aligned images, the demo) are only resized;
photographs go through MTCNN detection and 5-point alignment (pasm/align.py), so the same
alignment is applied at training and at prediction time.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from pasm.data.h5store import Faces
from pasm.data.labels import CLASSES
from pasm.data.readers.records import Record, ReaderOutput, subset_masks

log = logging.getLogger(__name__)

PRE_ALIGNED = "pre-aligned"


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


def _decode_aligned(rec: Record, size: int) -> np.ndarray:
    return load_rgb(rec.path, size) if rec.pixels is None else pixels_rgb(rec.pixels, size)


def build_faces(
    records: Sequence[Record] | ReaderOutput,
    size: int,
    attrs: dict,
    align: dict | None = None,
    device: str = "cpu",
    chunk: int = 64,
) -> Faces:
    """Decode (and where needed detect and align) every record into one Faces array.

    Undecodable files are skipped, counted and named in the log; images without a face follow
    align["on_no_face"] (centre crop, or drop: counted and named). Nothing is dropped silently.
    """
    output = records if isinstance(records, ReaderOutput) else ReaderOutput(records=list(records))
    recs = output.records
    images: list[np.ndarray | None] = [None] * len(recs)
    status = [PRE_ALIGNED] * len(recs)
    undecodable, no_face = [], []
    todo = [i for i, r in enumerate(recs) if not r.aligned]
    for i, rec in enumerate(tqdm(recs, desc="decode", unit="img", mininterval=2.0)):
        if not rec.aligned:
            continue
        try:
            images[i] = _decode_aligned(rec, size)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            log.warning("skipped %s: cannot decode image (%s)", rec.source, exc)
            undecodable.append(rec.source)
    if todo:
        from pasm.data.align import AlignSettings, FaceAligner, load_image

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
    log.info(
        "faces: %d kept %s; %d skipped by the reader, %d undecodable, %d dropped (no face)",
        len(kept), status_counts, len(output.skipped), len(undecodable), len(no_face),
    )
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
            "label_map": output.label_map,
        },
    )
