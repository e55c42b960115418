"""Decoding image files to RGB arrays, and the file extensions treated as images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
"""Lower-case extensions of the files read as images from folders; Pillow decodes them all."""

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
"""PIL modes of 16-bit grey images (PNG, TIFF); PIL's own convert("RGB") would clip them to 255, i.e.
white."""


def eight_bit(im: Image.Image, sixteen_bit_int: bool = False) -> Image.Image:
    """16-bit grey -> 8-bit grey by value >> 8 (the high byte: the scaling PIL itself applies to
    16-bit RGB PNGs, exact for 8-bit images stored as v * 257); other 8-bit modes unchanged.

    sixteen_bit_int: a 32-bit "I" image holds 16-bit values (older PIL opens 16-bit PNGs so).
    Other 32-bit integer or float images have no agreed range: ValueError (callers name the file).
    """
    if im.mode in SIXTEEN_BIT_MODES or (im.mode == "I" and sixteen_bit_int):
        values = np.asarray(im).astype(np.uint32)
        return Image.fromarray((np.clip(values, 0, 65535) >> 8).astype(np.uint8), "L")
    if im.mode in ("I", "F"):
        kind = "32-bit integer" if im.mode == "I" else "floating-point"
        raise ValueError(
            f"{kind} pixels (PIL mode {im.mode}) have no defined 8-bit scale; "
            "save the image with 8 or 16 bits per channel"
        )
    return im


def decode_rgb(path: str | Path) -> Image.Image:
    """Open an image file, apply its EXIF orientation, scale 16-bit grey to 8 bits, convert to RGB."""
    with Image.open(path) as im:
        png = im.format == "PNG"
        im = eight_bit(ImageOps.exif_transpose(im), sixteen_bit_int=png)
        return im.convert("RGB")


def load_image(path: str | Path) -> np.ndarray:
    """Decode to RGB uint8 (see `decode_rgb`); ValueError naming the path if undecodable."""
    try:
        return np.asarray(decode_rgb(path), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot decode image {path}: {exc}") from exc
