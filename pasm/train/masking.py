"""PASM augmentation (Sec. 3.3): mask an S x S patch centred on each image's sensitive point."""

from __future__ import annotations

import numpy as np


def patch_bounds(x: np.ndarray, y: np.ndarray, size: int, height: int, width: int) -> tuple[np.ndarray, ...]:
    """Half-open row/column bounds (y0, y1, x0, x1) of S x S patches centred on (x, y), clipped to the image.

    For even S the centre pixel is the lower-right of the four central pixels.
    """
    half = size // 2
    x = np.asarray(x, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    y0 = np.clip(y - half, 0, height)
    x0 = np.clip(x - half, 0, width)
    y1 = np.clip(y - half + size, 0, height)
    x1 = np.clip(x - half + size, 0, width)
    return y0, y1, x0, x1


def apply_masks(
    images: np.ndarray, x: np.ndarray, y: np.ndarray, rgb: np.ndarray, size: int, chunk: int = 512
) -> np.ndarray:
    """Return a copy of uint8 (N, H, W, 3) images with each patch filled with its point's RGB."""
    n, h, w, _ = images.shape
    if not (len(x) == len(y) == len(rgb) == n):
        raise ValueError(f"need one point per image: {n} images, {len(x)} x, {len(y)} y, {len(rgb)} rgb")
    y0, y1, x0, x1 = patch_bounds(x, y, size, h, w)
    rgb = np.asarray(rgb, dtype=np.uint8)
    out = np.empty_like(images)
    rows, cols = np.arange(h), np.arange(w)
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        in_rows = (rows >= y0[s:e, None]) & (rows < y1[s:e, None])
        in_cols = (cols >= x0[s:e, None]) & (cols < x1[s:e, None])
        inside = in_rows[:, :, None] & in_cols[:, None, :]
        out[s:e] = np.where(inside[..., None], rgb[s:e, None, None, :], images[s:e])
    return out
