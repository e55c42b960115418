"""Corrupted copies of aligned test faces for the robustness evaluation: occlusions placed by the
alignment template, random square patches, and pixel corruptions at three severities in the spirit of
ImageNet-C (Hendrycks and Dietterich, 2019). Every copy is a function of (seed, corruption, face row)
alone, so every model and every seed sees the same corrupted faces; nothing is written back to faces.h5.

A corruption is named by its key: ``occlusion/<region>/<fill>``, ``patch/<side in % of the face>``
or ``<pixel corruption>/<severity>``. The values behind each severity: SEVERITIES (docs/robustness.md).
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import gaussian_filter

REGIONS = ("eyes", "mouth", "nose", "left_half", "right_half", "upper", "lower")
"""Occluded regions, placed by the template's landmarks; left and right as the image shows them."""

FILLS = ("grey", "black", "noise")
"""What an occluded region is filled with: mid grey (128), black, or uniform random grey levels."""

SEVERITIES: dict[str, tuple[float, float, float]] = {
    "gaussian_noise": (0.04, 0.08, 0.16),  # standard deviation, as a share of 255
    "gaussian_blur": (0.01, 0.02, 0.04),  # standard deviation, as a share of the face side
    "downscale": (2, 3, 4),  # shrunk by this factor (area), then enlarged back (bilinear)
    "jpeg": (30, 15, 7),  # JPEG quality
    "brightness": (0.15, 0.3, 0.5),  # added to every pixel, as a share of 255
    "contrast": (0.5, 0.3, 0.15),  # distance to the face's mean grey multiplied by this
}
"""Pixel corruptions and the value of each of their severities 1, 2 and 3 (mild, clear, strong)."""

PIXEL_CORRUPTIONS = tuple(SEVERITIES)


@dataclass(frozen=True)
class Corruption:
    """One corrupted copy of the test faces: ``kind`` occlusion (``name`` a region, ``level`` a fill),
    patch (``level`` the side in % of the face) or a pixel corruption (``level`` its severity)."""

    kind: str
    name: str
    level: str | int

    @property
    def key(self) -> str:
        """Its name in tables and files: occlusion/eyes/grey, patch/25, gaussian_noise/2."""
        if self.kind == "occlusion":
            return f"occlusion/{self.name}/{self.level}"
        if self.kind == "patch":
            return f"patch/{self.level}"
        return f"{self.name}/{self.level}"

    @property
    def family(self) -> str:
        """What it belongs to in the plot's bars: the region, 'patch', or the pixel corruption."""
        return f"occlusion {self.name}" if self.kind == "occlusion" else self.name


def corruption_list(
    occlusions: Sequence[str],
    fills: Sequence[str],
    patches: Sequence[int],
    corruptions: Sequence[str],
    severities: Sequence[int],
) -> list[Corruption]:
    """Every corruption the settings ask for, in table order (occlusions, patches, pixel corruptions)."""
    for value, known, what in (
        (occlusions, REGIONS, "occlusion region"),
        (fills, FILLS, "fill"),
        (corruptions, PIXEL_CORRUPTIONS, "corruption"),
        (severities, (1, 2, 3), "severity"),
    ):
        unknown = [v for v in value if v not in known]
        if unknown:
            raise ValueError(f"unknown {what} {unknown}; known: {list(known)}")
    bad = [p for p in patches if not 1 <= int(p) <= 100]
    if bad:
        raise ValueError(f"patch sides are percentages of the face side in 1..100, got {bad}")
    out = [Corruption("occlusion", r, f) for r in occlusions for f in fills]
    out += [Corruption("patch", "patch", int(p)) for p in patches]
    out += [Corruption("pixel", c, int(s)) for c in corruptions for s in severities]
    return out


def region_mask(region: str, size: int, landmarks: np.ndarray) -> np.ndarray:
    """(size, size) boolean mask of an occlusion region of a face aligned to ``landmarks`` (5, 2):
    left eye, right eye, nose tip, left and right mouth corner, (x, y) in pixels."""
    (lex, ley), (rex, rey), (nx, ny), (lmx, lmy), (rmx, rmy) = np.asarray(landmarks, dtype=np.float64)
    d = rex - lex  # inter-ocular distance: the unit of the boxes
    eye_y, mouth_y = (ley + rey) / 2, (lmy + rmy) / 2
    boxes = {  # (x0, x1, y0, y1) in pixels, ends exclusive
        "eyes": (lex - 0.4 * d, rex + 0.4 * d, eye_y - 0.25 * d, eye_y + 0.25 * d),
        "mouth": (lmx - 0.25 * d, rmx + 0.25 * d, mouth_y - 0.3 * d, mouth_y + 0.3 * d),
        "nose": (nx - 0.3 * d, nx + 0.3 * d, eye_y + 0.3 * d, ny + 0.15 * d),
        "left_half": (0, size / 2, 0, size),
        "right_half": (size / 2, size, 0, size),
        "upper": (0, size, 0, ny),
        "lower": (0, size, ny, size),
    }
    if region not in boxes:
        raise ValueError(f"unknown occlusion region {region!r}; known: {list(REGIONS)}")
    x0, x1, y0, y1 = boxes[region]
    ys, xs = np.arange(size) + 0.5, np.arange(size) + 0.5  # pixel centres
    inside_y = (ys >= y0) & (ys < y1)
    inside_x = (xs >= x0) & (xs < x1)
    return inside_y[:, None] & inside_x[None, :]


def face_rng(seed: int, corruption: Corruption, row: int) -> np.random.Generator:
    """The random numbers of one face's copy: keyed by the seed, the corruption's key and the face row."""
    return np.random.default_rng([int(seed), zlib.crc32(corruption.key.encode()), int(row)])


def _is_grey(image: np.ndarray) -> bool:
    return bool((image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all())


def _noise_like(rng: np.random.Generator, image: np.ndarray, draw) -> np.ndarray:
    """Noise of one face: one value per pixel for a grey face (it stays grey), one per channel otherwise."""
    h, w, c = image.shape
    return np.repeat(draw(rng, (h, w, 1)), c, axis=2) if _is_grey(image) else draw(rng, (h, w, c))


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def corrupt(
    images: np.ndarray, rows: np.ndarray, corruption: Corruption, *, seed: int, landmarks: np.ndarray
) -> np.ndarray:
    """Corrupted copies of uint8 faces (N, H, W, 3) of the given face ``rows``; the input is not changed."""
    images = np.asarray(images)
    n, size = len(images), images.shape[1]
    if corruption.kind == "occlusion":
        mask = region_mask(corruption.name, size, landmarks)
        out = images.copy()
        if corruption.level == "noise":
            for i in range(n):
                noise = _noise_like(
                    face_rng(seed, corruption, rows[i]),
                    images[i],
                    lambda r, shape: r.integers(0, 256, size=shape, dtype=np.uint8),
                )
                out[i][mask] = noise[mask]
        else:
            out[:, mask] = {"grey": 128, "black": 0}[str(corruption.level)]
        return out
    if corruption.kind == "patch":
        side = max(1, min(size, round(size * int(corruption.level) / 100)))
        out = images.copy()
        for i in range(n):
            y, x = face_rng(seed, corruption, rows[i]).integers(0, size - side + 1, size=2)
            out[i, y : y + side, x : x + side] = 128
        return out
    return pixel_corruption(images, rows, corruption, seed=seed)


def pixel_corruption(
    images: np.ndarray, rows: np.ndarray, corruption: Corruption, *, seed: int
) -> np.ndarray:
    """A pixel corruption (PIXEL_CORRUPTIONS) of uint8 faces at the corruption's severity."""
    name, value = corruption.name, SEVERITIES[corruption.name][int(corruption.level) - 1]
    x = images.astype(np.float32)
    size = images.shape[1]
    if name == "gaussian_noise":
        noise = (
            np.stack(
                [
                    _noise_like(
                        face_rng(seed, corruption, r),
                        img,
                        lambda g, shape: g.standard_normal(shape, np.float32),
                    )
                    for r, img in zip(rows, images)
                ]
            )
            if len(images)
            else np.zeros_like(x)
        )
        return _to_uint8(x + noise * value * 255)
    if name == "gaussian_blur":
        return _to_uint8(gaussian_filter(x, sigma=(0, value * size, value * size, 0), mode="reflect"))
    if name == "downscale":
        t = torch.from_numpy(x).permute(0, 3, 1, 2)
        small = F.interpolate(t, size=max(1, round(size / value)), mode="area")
        back = F.interpolate(small, size=size, mode="bilinear", align_corners=False)
        return _to_uint8(back.permute(0, 2, 3, 1).numpy())
    if name == "jpeg":
        out = np.empty_like(images)
        for i, img in enumerate(images):
            buf = io.BytesIO()  # a grey face is coded as grey, so it stays grey
            Image.fromarray(img[..., 0] if _is_grey(img) else img).save(
                buf, format="JPEG", quality=int(value)
            )
            out[i] = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        return out
    if name == "brightness":
        return _to_uint8(x + value * 255)
    if name == "contrast":
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        return _to_uint8((x - mean) * value + mean)
    raise ValueError(f"unknown corruption {name!r}; known: {list(PIXEL_CORRUPTIONS)}")
