"""Face detection (MTCNN) and 5-point similarity alignment to a fixed template.

Conventions used throughout:

* Images are uint8 arrays (H, W, 3) in RGB.  `FaceAligner.align` also accepts grey (H, W),
  (H, W, 1) and RGBA (H, W, 4) arrays and converts them here (`to_rgb`: grey is replicated,
  alpha is dropped), so callers may pass any of these.
* Points are (x, y) = (column, row) with pixel *centres* at integer coordinates, the
  convention of MTCNN's landmarks.  Landmark order is MTCNN's: left eye, right eye, nose tip,
  left mouth corner, right mouth corner, where "left" means left in the image.
* Warping samples bilinearly and fills everything outside the source image with black
  (constant 0), as common 5-point alignment code does: black carries no image structure,
  whereas edge replication smears border pixels into streaks that look like texture.

Detection, transform estimation and warping are deterministic: the same input gives
bit-identical output (MTCNN runs on CPU, nothing is random).

The work per image is bounded (`upsample_factor`): detection upsamples by at most MAX_UPSAMPLE and
to at most UPSAMPLE_MAX_PIXELS, and no step makes an image above `pasm.data.decode.MAX_PIXELS`.
Images of extreme aspect ratio (a 1 x 20,000 strip) are not refused: they are detected at that
bounded size (one still thinner than min_face is not given to MTCNN at all), find no face and follow
on_no_face, so a batch never fails because of one odd image and callers see "no face", as for any
faceless image.  Refusal (`pasm.data.decode.ImageTooLarge`) is for more than MAX_PIXELS pixels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from pasm.data import decode

ON_NO_FACE = ("center_crop", "drop")
"""Policies for images without a detected face: resize the centred square, or leave it out."""

MAX_UPSAMPLE = 16.0
"""Largest enlargement before detection: a 10 px shorter side still reaches the default upsample_below
(160 px). A face needs some pixels to be found at all (a 16 px wide photo is found, 10x upsampled),
so a larger factor only costs memory (unbounded, a 1 px side was enlarged 160 times)."""

UPSAMPLE_MAX_PIXELS = 2**22
"""Most pixels an upsampled detection input may have (4.2 M, e.g. 2048 x 2048): MTCNN on it peaks at
about 250 MB above its own footprint and takes about 2 s on one CPU thread. The ordinary upsampled
image has a 160 px shorter side (upsample_below), so only a side ratio above 160 (100 x 16,400 px)
reaches this; a 1 x 20,000 strip, enlarged 160 times before, is enlarged about 14 times."""

TEMPLATES: dict[str, np.ndarray] = {
    # Unit-square coordinates (0..1 spans the full output side), rows in MTCNN landmark order.
    # Own choice, built from facial proportions in units of the inter-ocular distance d = 0.30
    # of the side: nose tip 0.6 d and mouth corners 1.1 d below the eyes, mouth 0.8 d wide.
    # With the eyes at y = 0.35 the brows (~0.4 d above the eyes) sit near y = 0.23, the chin
    # (~1.75 d below the eyes) near y = 0.88 (room left for an open mouth), the cheeks (face
    # ~2.1 d wide) near x = 0.19 / 0.81: the whole face from brows to chin with a margin, plus
    # the forehead, as expression recognition needs.  Checked visually on real photographs.
    "fer-v1": np.array(
        [
            [0.350, 0.350],  # left eye
            [0.650, 0.350],  # right eye
            [0.500, 0.530],  # nose tip
            [0.380, 0.680],  # left mouth corner
            [0.620, 0.680],  # right mouth corner
        ]
    ),
    # FER2013's own framing, for prediction with models trained on its 48 px crops (CK+48 frames
    # faces alike: its medians are within 0.015 of these). Measured, not designed: the median of
    # MTCNN's landmarks on the 1,314 faces found among FER2013's first 1,500 training rows, made
    # left-right symmetric. Tighter than fer-v1 (inter-ocular 0.39 of the side, eyes at y = 0.40).
    # A FER2013-trained compact model on 525 PublicTest faces: 56.8% as given, 44.2% re-aligned
    # (MTCNN + warp) with fer-v1, 52.8% with this template.
    "fer2013": np.array(
        [
            [0.307, 0.402],  # left eye
            [0.693, 0.402],  # right eye
            [0.500, 0.619],  # nose tip
            [0.334, 0.808],  # left mouth corner
            [0.666, 0.808],  # right mouth corner
        ]
    ),
}
"""Named 5-point templates; the name is stored with aligned data so models can record it."""
for _points in TEMPLATES.values():
    _points.setflags(write=False)  # shared constants: guard against accidental in-place edits


@dataclass(frozen=True)
class AlignSettings:
    """Everything that determines an aligned crop, so artifacts can record and compare it."""

    size: int = 224
    template: str = "fer-v1"
    scale: float = 1.0
    on_no_face: str = "center_crop"
    min_face: int = 20
    upsample_below: int = 160
    detect_max_side: int = 640

    def __post_init__(self) -> None:
        """Reject settings that cannot produce a crop, naming the offending field."""
        if self.template not in TEMPLATES:
            raise ValueError(f"unknown template {self.template!r}; known: {sorted(TEMPLATES)}")
        if self.on_no_face not in ON_NO_FACE:
            raise ValueError(f"on_no_face must be one of {ON_NO_FACE}, got {self.on_no_face!r}")
        if (
            self.size < 1
            or self.scale <= 0
            or self.min_face < 1
            or self.upsample_below < 0
            or self.detect_max_side < 0
        ):
            raise ValueError(f"invalid alignment settings: {self}")

    def to_dict(self) -> dict:
        """Plain JSON/HDF5-friendly values (stored in faces.h5 attrs and model files)."""
        return asdict(self)


def template_points(settings: AlignSettings) -> np.ndarray:
    """(5, 2) template landmarks in output pixel coordinates, scaled about the centre by 1/scale."""
    unit = TEMPLATES[settings.template]
    centre = (settings.size - 1) / 2.0
    return centre + (unit - 0.5) * settings.size / settings.scale


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; never a reflection) src -> dst, as 2x3.

    Solves dst ~ [[a, -b], [b, a]] src + t in closed form; this parametrisation excludes reflections.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need matching (K>=2, 2) point arrays, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    s, d = src - src_mean, dst - dst_mean
    norm = (s**2).sum()
    if norm == 0:
        raise ValueError("source points coincide; the transform is undefined")
    a = (s * d).sum() / norm
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / norm
    linear = np.array([[a, -b], [b, a]])
    return np.hstack([linear, (dst_mean - linear @ src_mean)[:, None]])


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix, as 2x3."""
    linear = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear, -(linear @ matrix[:, 2])[:, None]])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (K, 2) points through a 2x3 affine matrix."""
    return np.asarray(points, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]


def warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Resample uint8 (H, W, C) into (size, size, C): output(p) = image(inverse(matrix) p), bilinear,
    black outside.

    Vectorised over all output pixels; samples outside the source count as 0, so borders fade to black.
    """
    h, w = image.shape[:2]
    inv = invert_affine(np.asarray(matrix, dtype=np.float64))
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    x0, y0 = np.floor(sx), np.floor(sy)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    src = image.reshape(h, w, -1).astype(np.float32)
    out = np.zeros((size, size, src.shape[2]), dtype=np.float32)
    for dy, dx, weight in (
        (0, 0, (1 - fy) * (1 - fx)),
        (0, 1, (1 - fy) * fx),
        (1, 0, fy * (1 - fx)),
        (1, 1, fy * fx),
    ):
        xi, yi = x0 + dx, y0 + dy
        inside = ((xi >= 0) & (xi < w) & (yi >= 0) & (yi < h))[..., None]
        values = src[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]
        out += np.where(inside, values, 0.0) * weight.astype(np.float32)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.reshape((size, size) + image.shape[2:])


def prefilter(image: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box-reduce the source by an integer factor before a strongly shrinking warp (anti-aliasing).

    Bilinear sampling alone aliases when the warp shrinks by more than 2x (large photos); returns
    the reduced image and the matrix adjusted so that the warp still lands on the same template.
    """
    shrink = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    factor = int(np.floor(1.0 / shrink)) if shrink > 0 else 1
    if factor < 2:
        return image, matrix
    reduced = np.asarray(Image.fromarray(image).reduce(factor))
    # reduced pixel x' averages source pixels [f x', f x' + f), centred at f x' + (f - 1) / 2
    offset = np.full(2, (factor - 1) / 2.0)
    adjusted = np.hstack([matrix[:, :2] * factor, (matrix[:, :2] @ offset + matrix[:, 2])[:, None]])
    return reduced, adjusted


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Largest centred square, resized (bicubic, anti-aliased) to size x size: the no-face fallback."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = np.ascontiguousarray(image[top : top + side, left : left + side])
    if side == size:
        return square.copy()
    return np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.BICUBIC))


def to_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 grey (H, W) / (H, W, 1), RGB or RGBA -> RGB (H, W, 3); grey is replicated, alpha dropped."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, got {image.shape}")
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def upsample_factor(height: int, width: int, upsample_below: int, detect_max_side: int = 0) -> float:
    """Factor by which an image is resized before detection only (the crop is cut from the original pixels).

    Enlarges when the shorter side is below upsample_below; shrinks when the longer side exceeds
    detect_max_side (0: never), since MTCNN's cost grows with the pixel count and faces in big
    photos are large anyway.

    Bounded whatever the shape: an enlargement is at most MAX_UPSAMPLE and makes at most
    UPSAMPLE_MAX_PIXELS pixels (so an image with a short side below upsample_below but more pixels
    than that, a long strip, is shrunk to them instead), and no image is detected on with more than
    `pasm.data.decode.MAX_PIXELS` (only arrays handed in directly can be larger, with detect_max_side 0).
    Extreme aspect ratios are therefore detected at bounded size, not refused (see the module doc).
    Images of ordinary shape get the factor they always had.
    """
    short, long = min(height, width), max(height, width)
    if 0 < short < upsample_below:
        return min(upsample_below / short, MAX_UPSAMPLE, math.sqrt(UPSAMPLE_MAX_PIXELS / (height * width)))
    if detect_max_side and long > detect_max_side:
        return detect_max_side / long
    if height * width > decode.MAX_PIXELS:
        return math.sqrt(decode.MAX_PIXELS / (height * width))
    return 1.0


def upsample(image: np.ndarray, factor: float) -> np.ndarray:
    """Bicubic resize by `factor` (shorter side rounded to the target); identity for factor 1.

    ImageTooLarge (checked before resizing) if the result would exceed `pasm.data.decode.MAX_PIXELS`.
    """
    if factor == 1.0:
        return image
    h, w = image.shape[:2]
    new = (max(1, round(w * factor)), max(1, round(h * factor)))
    decode.check_pixels(*new, f"{w} x {h} image resized by {factor:g}")
    return np.asarray(Image.fromarray(image).resize(new, Image.Resampling.BICUBIC))


def unscale(points: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Map (K, 2) points from a resized image back to the original (per-axis scale, pixel centres at
    integers)."""
    return (points + 0.5) / scale - 0.5


def faces_by_size(
    boxes: np.ndarray | None, probs: np.ndarray | None, points: np.ndarray | None
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Every detection of one image as (box, (5, 2) landmarks, probability), largest first, ties by
    probability."""
    if boxes is None or len(boxes) == 0:
        return []
    boxes = np.asarray(boxes, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return [
        (boxes[i].copy(), np.asarray(points[i], dtype=np.float64).copy(), float(probs[i]))
        for i in np.lexsort((-probs, -area))
    ]


def align_face(
    image: np.ndarray, landmarks: np.ndarray, settings: AlignSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Warp one RGB image so its (5, 2) landmarks fall on the template; returns (crop, 2x3 matrix
    image -> crop)."""
    matrix = similarity_transform(landmarks, template_points(settings))
    source, sampling = prefilter(image, matrix)
    return warp(source, sampling, settings.size), matrix


class FaceAligner:
    """Batched MTCNN detection plus 5-point alignment of a list of photos."""

    def __init__(self, settings: AlignSettings, device: str = "cpu", batch_size: int = 16) -> None:
        """Build MTCNN (weights ship with facenet-pytorch, nothing is downloaded)."""
        from facenet_pytorch import MTCNN  # imported lazily: it pulls in torch

        self.settings = settings
        self.batch_size = max(1, int(batch_size))
        self.mtcnn = MTCNN(keep_all=True, min_face_size=settings.min_face, device=device, select_largest=True)

    def detect_all(self, images: Sequence[np.ndarray]) -> list[list[tuple[np.ndarray, np.ndarray, float]]]:
        """Per image, every face as (box x0,y0,x1,y1; (5, 2) landmarks; probability), largest first;
        [] if none.

        Small images are upsampled (large ones shrunk) first, by a bounded factor (`upsample_factor`),
        and results mapped back to the original pixels; equal-sized images share MTCNN batches.
        """
        rgb = [to_rgb(im) for im in images]
        factors = [
            upsample_factor(
                im.shape[0], im.shape[1], self.settings.upsample_below, self.settings.detect_max_side
            )
            for im in rgb
        ]
        prepared = [upsample(im, f) for im, f in zip(rgb, factors)]
        scales = [
            np.array(p.shape[1::-1], float) / np.array(im.shape[1::-1], float) for p, im in zip(prepared, rgb)
        ]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(prepared):
            groups.setdefault(im.shape[:2], []).append(i)
        results: list[list[tuple[np.ndarray, np.ndarray, float]]] = [[] for _ in rgb]
        for (height, width), indices in groups.items():
            if min(height, width) < self.settings.min_face:
                # MTCNN builds no pyramid level (and crashes) when the image is smaller than min_face
                continue
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                batch = np.stack([prepared[i] for i in chunk])
                boxes, probs, points = self.mtcnn.detect(batch, landmarks=True)
                for i, b, p, q in zip(chunk, boxes, probs, points):
                    results[i] = [
                        (unscale(box.reshape(2, 2), scales[i]).ravel(), unscale(marks, scales[i]), prob)
                        for box, marks, prob in faces_by_size(b, p, q)
                    ]
        return results

    def detect(
        self, images: Sequence[np.ndarray]
    ) -> list[tuple[np.ndarray | None, np.ndarray | None, float | None]]:
        """Per image (box x0,y0,x1,y1; (5, 2) landmarks; probability) of its largest face, or
        (None, None, None)."""
        return [faces[0] if faces else (None, None, None) for faces in self.detect_all(images)]

    def align(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[str], list[np.ndarray | None]]:
        """Aligned uint8 (N', size, size, 3), per-input status ("detected"/"center_crop"/"dropped") and boxes.

        Warps the original (not the upsampled) pixels; with on_no_face="drop" faceless images are left out.
        """
        rgb = [to_rgb(im) for im in images]
        size = self.settings.size
        crops, status = [], []
        detections = self.detect(rgb)
        for image, (_, marks, _) in zip(rgb, detections):
            if marks is not None:
                crops.append(align_face(image, marks, self.settings)[0])
                status.append("detected")
            elif self.settings.on_no_face == "center_crop":
                crops.append(center_crop(image, size))
                status.append("center_crop")
            else:
                status.append("dropped")
        aligned = np.stack(crops) if crops else np.zeros((0, size, size, 3), dtype=np.uint8)
        return aligned, status, [d[0] for d in detections]
