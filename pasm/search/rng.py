"""Counter-based randomness of the point search: every draw is a pure function of
(seed, global image index, stream, position), hashed with splitmix64, so a shard of the
training set reproduces exactly the numbers the full run draws for its images."""

from __future__ import annotations

import numpy as np

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_KEY_BLOCK = 2048  # images per block when hashing random numbers (bounds temporary memory)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser applied elementwise, in place, to a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= _MIX1
        z ^= z >> np.uint64(27)
        z *= _MIX2
        z ^= z >> np.uint64(31)
    return z


def image_keys(seed: int, indices: np.ndarray) -> np.ndarray:
    """One 64-bit random key per image from (seed, global image index); keys seed all its draws."""
    s = _mix64(np.array([int(seed) % 2**64], dtype=np.uint64))
    idx = np.asarray(indices).astype(np.uint64)
    with np.errstate(over="ignore"):
        return _mix64(s ^ _mix64(idx * _GAMMA + _GAMMA))


def uniforms(keys: np.ndarray, step: int, shape: tuple[int, ...]) -> np.ndarray:
    """U[0, 1) float64 draws of shape (len(keys), *shape) for stream ``step``, a pure function of
    (key, step, position), so each image's numbers ignore which other images are present."""
    n = int(np.prod(shape))
    out = np.empty((len(keys), n), dtype=np.float64)
    with np.errstate(over="ignore"):
        step_key = _mix64(np.array([step + 1], dtype=np.uint64) * _GAMMA)
        ctr = np.arange(1, n + 1, dtype=np.uint64) * _GAMMA
        for s in range(0, len(keys), _KEY_BLOCK):
            k = _mix64(keys[s : s + _KEY_BLOCK] ^ step_key)
            h = _mix64(k[:, None] + ctr[None, :])
            out[s : s + _KEY_BLOCK] = (h >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return out.reshape(len(keys), *shape)


def uniform_int(u: np.ndarray, n: int) -> np.ndarray:
    """Map U[0, 1) draws to integers in [0, n)."""
    return np.minimum(np.floor(u * n).astype(np.int64), n - 1)
