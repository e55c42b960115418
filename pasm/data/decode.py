"""Decoding image files to RGB arrays, the file extensions treated as images, and the pixel cap.

Every image is checked against MAX_PIXELS from its header, before any pixel is decoded, and every
step that makes a larger image from one (the detector's upsampling in `pasm.data.align`, the box
crops in `pasm.data.faces`) checks its output size the same way (`check_pixels`), so one input
costs a bounded amount of memory and time whatever its file claims.  Refusals raise
`ImageTooLarge`, a ValueError naming the file and its size, which callers can tell apart from an
undecodable file (e.g. HTTP 413 rather than 415).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 160_000_000
"""Most pixels (width x height) an image may have to be decoded, or any step may make of one.

Above every photograph a camera makes that Pillow opens (the largest: 151 MP, 14204 x 10652, from
medium-format backs; 102 MP medium-format bodies; 108 MP phone sensors; phone panoramas stay far
below) and below Pillow's own refusal (2 x Image.MAX_IMAGE_PIXELS = 179 MP, which already refuses
200 MP phone modes), so no photo decoded before is refused now.  An image at the cap takes 480 MB
as RGB (a 160 MP PNG: 1.5 GB peak while decoded); anything larger is refused from its header.
"""

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


class ImageTooLarge(ValueError):
    """An image (or an image a step would make of it) with more than MAX_PIXELS pixels.

    The message names the file (or what was resized) and its size.  A ValueError, so code that
    treats any unusable file as a per-file error keeps working; callers that answer differently for
    an oversized input (HTTP 413 or 422, a counted skip) catch this type first.
    """


def check_pixels(width: int, height: int, what: object) -> None:
    """ImageTooLarge naming `what` when width x height exceeds MAX_PIXELS (read at call time)."""
    if width * height > MAX_PIXELS:
        raise ImageTooLarge(
            f"{what}: {width} x {height} = {width * height:,} pixels, more than the limit of "
            f"{MAX_PIXELS:,} (pasm.data.decode.MAX_PIXELS)"
        )


def decode_rgb(path: str | Path) -> Image.Image:
    """Open an image file, apply its EXIF orientation, scale 16-bit grey to 8 bits, convert to RGB.

    ImageTooLarge, from the header alone (nothing is decoded), for more than MAX_PIXELS pixels,
    including the images Pillow itself refuses as decompression bombs.
    """
    try:
        opened = Image.open(path)
    except Image.DecompressionBombError as exc:  # above Pillow's own limit, also only from the header
        raise ImageTooLarge(f"{path}: {exc}") from None
    with opened as im:
        check_pixels(*im.size, path)  # the header's size; EXIF rotation keeps the pixel count
        png = im.format == "PNG"
        im = eight_bit(ImageOps.exif_transpose(im), sixteen_bit_int=png)
        return im.convert("RGB")


def load_image(path: str | Path) -> np.ndarray:
    """Decode to RGB uint8 (see `decode_rgb`); ValueError naming the path if undecodable, its subclass
    ImageTooLarge if larger than MAX_PIXELS."""
    try:
        return np.asarray(decode_rgb(path), dtype=np.uint8)
    except ImageTooLarge:
        raise  # names the path and the size already
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot decode image {path}: {exc}") from exc
