"""Face detection + alignment throughput: batched vs one by one, and big photos shrunk for detection.

Prints images/s side by side in one run and the ratios. Usage (from the repository root):
    .venv/bin/python benchmarks/alignment.py [copies]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pasm.data.align import AlignSettings, FaceAligner
from pasm.data.decode import load_image

PHOTO = Path(__file__).resolve().parents[2] / "shared" / "images" / "faces" / "angry.jpg"


def rate(aligner: FaceAligner, images: list[np.ndarray], one_by_one: bool) -> float:
    """Images per second of aligner.align over the list."""
    start = time.perf_counter()
    if one_by_one:
        for im in images:
            aligner.align([im])
    else:
        aligner.align(images)
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    torch.set_num_threads(1)
    copies = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    photo = load_image(PHOTO)
    big = np.asarray(
        Image.fromarray(photo).resize((photo.shape[1] * 4, photo.shape[0] * 4), Image.Resampling.BICUBIC)
    )
    small_set, big_set = [photo] * copies, [big] * max(2, copies // 4)
    rows = [
        (
            "425x521, batched (16)",
            rate(FaceAligner(AlignSettings(size=224), batch_size=16), small_set, False),
        ),
        ("425x521, one by one", rate(FaceAligner(AlignSettings(size=224), batch_size=1), small_set, True)),
        (
            "1700x2084, detect at full size",
            rate(FaceAligner(AlignSettings(size=224, detect_max_side=0)), big_set, False),
        ),
        (
            "1700x2084, detect shrunk to 640",
            rate(FaceAligner(AlignSettings(size=224, detect_max_side=640)), big_set, False),
        ),
    ]
    for name, r in rows:
        print(f"{name:34s} {r:7.2f} img/s")
    print(f"batched / one by one: {rows[0][1] / rows[1][1]:.2f}x")
    print(f"shrunk / full-size detection on big photos: {rows[3][1] / rows[2][1]:.2f}x")


if __name__ == "__main__":
    main()
