"""Images read on demand from an HDF5 dataset: the stages hold a few batches, never a whole split.

``H5Rows`` stands where a uint8 (N, H, W, 3) array stood: ``len``, ``shape``, ``dtype`` and
indexing with a slice or an integer array return what the array would, reading only those rows.
Consecutive file rows are read as one hyperslab; scattered rows one read each (h5py's fancy
indexing is 25-100x slower than per-row reads here: 72 against 7,956 images/s at 224 px).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np


def runs(rows: np.ndarray) -> list[tuple[int, int, int]]:
    """(position, first file row, length) of each run of consecutive increasing file rows in ``rows``."""
    if len(rows) == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], breaks])
    lengths = np.diff(np.concatenate([starts, [len(rows)]]))
    return [(int(s), int(rows[s]), int(n)) for s, n in zip(starts, lengths)]


class H5Rows:
    """Rows ``rows`` (default: all) of dataset ``key`` in the HDF5 file ``path``, read when indexed.

    The file is opened on first use and kept open; each process (or DataLoader worker) that
    unpickles an H5Rows opens its own handle.
    """

    def __init__(self, path: str | Path, key: str = "images", rows: np.ndarray | None = None) -> None:
        self.path, self.key = str(path), key
        with h5py.File(self.path, "r") as f:
            if key not in f:
                raise KeyError(f"{self.path} has no dataset {key!r} (has {sorted(f)})")
            dset = f[key]
            self._file_shape, self.dtype = tuple(dset.shape), dset.dtype
        self.rows = np.arange(self._file_shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
        if len(self.rows) and (self.rows.min() < 0 or self.rows.max() >= self._file_shape[0]):
            raise IndexError(f"{self.path}:{key}: rows outside 0..{self._file_shape[0] - 1}")
        self._file: h5py.File | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self._file_shape[1:])

    @property
    def ndim(self) -> int:
        return len(self._file_shape)

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_file": None}

    def _dataset(self) -> h5py.Dataset:
        if self._file is None:
            self._file = h5py.File(self.path, "r")
        return self._file[self.key]

    def close(self) -> None:
        """Close the file handle (reopened by the next read)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def subset(self, positions: np.ndarray) -> "H5Rows":
        """A lazy view of some of these rows (positions into this view)."""
        view = H5Rows.__new__(H5Rows)
        view.__dict__.update(self.__getstate__())
        view.rows = self.rows[np.asarray(positions, dtype=np.int64)]
        return view

    def read(self, positions: np.ndarray) -> np.ndarray:
        """The rows at ``positions`` (any order, repeats allowed) as one array."""
        wanted = self.rows[np.asarray(positions, dtype=np.int64)]
        uniq, inverse = np.unique(wanted, return_inverse=True)  # sorted file rows, read once each
        out = np.empty((len(uniq), *self._file_shape[1:]), dtype=self.dtype)
        dset = self._dataset()
        for pos, row, n in runs(uniq):
            dset.read_direct(out, np.s_[row : row + n], np.s_[pos : pos + n])
        return out if np.array_equal(uniq, wanted) else out[inverse.reshape(-1)]

    def __getitem__(self, item: Any) -> np.ndarray:
        if isinstance(item, tuple):  # rows first, then the rest as numpy would index the array
            return self[item[0]][(slice(None),) * (not isinstance(item[0], (int, np.integer))) + item[1:]]
        if isinstance(item, slice):
            return self.read(np.arange(len(self.rows))[item])
        if isinstance(item, (int, np.integer)):
            return self.read(np.array([item]))[0]
        item = np.asarray(item)
        if item.dtype == bool:
            item = np.flatnonzero(item)
        return self.read(item)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.read(np.arange(len(self.rows)))
        return out if dtype is None else out.astype(dtype)

    def blocks(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        """(start position, rows start:start+size) over the whole view, in order."""
        for start in range(0, len(self.rows), size):
            yield start, self[start : start + size]
