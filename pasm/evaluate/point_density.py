"""Where the mined points fall on the face: smoothed 2-D histograms per class, and the mean face under them.

A round's points (points.h5) are the pixels its teacher was most sensitive to; their density over
the aligned face shows which facial regions the network leans on, and how that moves as rounds
mask those regions away.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def default_sigma(size: int) -> float:
    """Smoothing width in pixels: 1/32 of the face side (2 px at 64 px), at least 1 px."""
    return max(1.0, size / 32)


def point_histogram(x: np.ndarray, y: np.ndarray, height: int, width: int) -> np.ndarray:
    """Counts (height, width) of points per pixel; x is the column, y the row."""
    x = np.asarray(x, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    if ((x < 0) | (x >= width) | (y < 0) | (y >= height)).any():
        raise ValueError(f"points outside the {width}x{height} image")
    return np.bincount(y * width + x, minlength=height * width).reshape(height, width).astype(float)


def smoothed_density(x: np.ndarray, y: np.ndarray, height: int, width: int, sigma: float) -> np.ndarray:
    """Gaussian-smoothed histogram of the points, scaled to sum to 1 (all zeros when there are no points)."""
    hist = gaussian_filter(point_histogram(x, y, height, width), sigma, mode="constant")
    total = hist.sum()
    return hist / total if total > 0 else hist


def class_densities(
    x: np.ndarray,
    y: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    height: int,
    width: int,
    sigma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Densities (num_classes + 1, height, width): one per class, then all points; and the point count
    of each."""
    labels = np.asarray(labels)
    groups = [labels == c for c in range(num_classes)] + [np.ones(len(labels), dtype=bool)]
    dens = np.stack(
        [smoothed_density(np.asarray(x)[g], np.asarray(y)[g], height, width, sigma) for g in groups]
    )
    return dens, np.array([int(g.sum()) for g in groups])


def mean_grey_face(images: np.ndarray, rows: np.ndarray | None = None, chunk: int = 1024) -> np.ndarray:
    """Mean luminance (H, W) in [0, 1] of uint8 (N, H, W, 3) faces (only `rows` if given): the
    densities' backdrop."""
    rows = np.arange(len(images)) if rows is None else np.asarray(rows)
    if len(rows) == 0:
        raise ValueError("no faces to average")
    total = np.zeros(images.shape[1:], dtype=np.float64)
    for start in range(0, len(rows), chunk):  # in chunks: a float copy of every face would not fit
        total += images[rows[start : start + chunk]].sum(0, dtype=np.float64)
    return (total / (255.0 * len(rows))) @ np.array([0.299, 0.587, 0.114])
