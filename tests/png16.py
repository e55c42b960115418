"""A minimal 16-bit PNG writer for the tests (Pillow writes 16-bit grey, but no 16-bit RGB)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}
"""Channels -> PNG colour type: grey, grey + alpha, RGB, RGBA."""


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def write_png16(path: Path, pixels: np.ndarray) -> Path:
    """Write uint16 (H, W) or (H, W, C) pixels as a 16-bit-per-channel PNG (no filtering, one IDAT)."""
    data = np.asarray(pixels, dtype=">u2")
    if data.ndim == 2:
        data = data[..., None]
    height, width, channels = data.shape
    header = struct.pack(">IIBBBBB", width, height, 16, COLOUR_TYPES[channels], 0, 0, 0)
    raw = b"".join(b"\x00" + data[row].tobytes() for row in range(height))
    chunks = _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)
    return path


def source_8bit(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A seeded uint8 image of mean about 78 (dark, as the photos of the bad-input report)."""
    return np.random.default_rng(seed).integers(0, 157, shape, dtype=np.uint16).astype(np.uint8)


def as_16bit(pixels: np.ndarray) -> np.ndarray:
    """The exact 16-bit form of 8-bit pixels (v * 257 maps 0..255 onto 0..65535)."""
    return pixels.astype(np.uint16) * 257
