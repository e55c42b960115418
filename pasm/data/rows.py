"""Images read on demand from an HDF5 dataset: the stages hold a few batches, never a whole split.

``H5Rows`` stands where a uint8 (N, H, W, 3) array stood: ``len``, ``shape``, ``dtype`` and
indexing with a slice or an integer array return what the array would, reading only those rows.
Where every row is one uncompressed chunk (faces.h5, masked.h5), rows are read with ``os.preadv``
at their chunks' byte offsets in the file, one call per run of adjacent chunks, bypassing HDF5's
per-read overhead; any other layout is read through h5py, consecutive file rows as one hyperslab
and scattered rows one read each (h5py's fancy indexing is much slower than per-row reads).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

FEW_ROWS = 16
"""Views of at most this many rows look their chunks up one by one; larger ones in one pass over all
the dataset's chunks (a lookup costs as much as passing over a few hundred chunks)."""


def runs(rows: np.ndarray) -> list[tuple[int, int, int]]:
    """(position, first file row, length) of each run of consecutive increasing file rows in ``rows``."""
    if len(rows) == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], breaks])
    lengths = np.diff(np.concatenate([starts, [len(rows)]]))
    return [(int(s), int(rows[s]), int(n)) for s, n in zip(starts, lengths)]


def chunk_offsets(dset: h5py.Dataset, rows: np.ndarray) -> np.ndarray | None:
    """int64 byte offset in the file of each of ``rows``' data, where each row of ``dset`` is one
    chunk stored whole (chunk shape (1, ...), no filters) and all of those chunks are allocated;
    None for any other layout."""
    shape = dset.shape
    if (
        not hasattr(os, "preadv")
        or len(shape) < 1
        or dset.chunks != (1, *shape[1:])
        or dset.id.get_create_plist().get_nfilters() != 0
        or dset.dtype.kind not in "biufc"
        or not (dset.dtype.isnative or dset.dtype.itemsize == 1)
    ):
        return None
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dset.dtype.itemsize
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) > FEW_ROWS and hasattr(dset.id, "chunk_iter"):
        file_offsets = np.full(shape[0], -1, dtype=np.int64)
        whole = [True]

        def visit(info: Any) -> None:
            if info.filter_mask or info.size != row_bytes or info.byte_offset is None:
                whole[0] = False
            else:
                file_offsets[info.chunk_offset[0]] = info.byte_offset

        try:
            dset.id.chunk_iter(visit)
        except (RuntimeError, NotImplementedError):  # an HDF5 library without H5Dchunk_iter
            return None
        offsets = file_offsets[rows]
        if not whole[0]:
            return None
    else:
        offsets = np.empty(len(rows), dtype=np.int64)
        tail = (0,) * (len(shape) - 1)
        for i, row in enumerate(rows.tolist()):
            info = dset.id.get_chunk_info_by_coord((row, *tail))
            if info.filter_mask or info.size != row_bytes or info.byte_offset is None:
                return None
            offsets[i] = info.byte_offset
    return None if (offsets < 0).any() else offsets


def pread_rows(fd: int, offsets: np.ndarray, out: np.ndarray, name: str = "file") -> np.ndarray:
    """Fill the C-contiguous ``out`` with the rows stored at byte ``offsets`` of the open file ``fd``,
    one ``os.preadv`` per run of adjacent rows; an OSError naming ``name`` if the file ends early."""
    if len(offsets) == 0:
        return out
    row_bytes = out[0].nbytes
    flat = memoryview(out.reshape(-1).view(np.uint8))
    breaks = np.flatnonzero(np.diff(offsets) != row_bytes) + 1
    starts = [0, *breaks.tolist()]
    ends = [*breaks.tolist(), len(offsets)]
    for start, end in zip(starts, ends):
        view, at = flat[start * row_bytes : end * row_bytes], int(offsets[start])
        while len(view):
            got = os.preadv(fd, [view], at)
            if got <= 0:
                raise OSError(errno.EIO, f"{name} ends at byte {at}, inside the data of a row")
            view, at = view[got:], at + got
    return out


class H5Rows:
    """Rows ``rows`` (default: all) of dataset ``key`` in the HDF5 file ``path``, read when indexed.

    The file is opened on first use and kept open; each process (or DataLoader worker) that
    unpickles an H5Rows opens its own handle. The rows' chunk offsets (one int64 per row, for
    the direct reads) are looked up once per file, checked against h5py's read of a row, and
    kept with the file's identity, so they are never used for another file under the same name.
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
        self._offsets: np.ndarray | None = None  # byte offset of each row's chunk in the file
        self._identity: tuple[int, ...] | None = None  # the file (os.fstat) _offsets belong to
        self._fd: int | bool | None = (
            None  # of the open handle: fd for direct reads, False: none, None: unchecked
        )

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self._file_shape[1:])

    @property
    def ndim(self) -> int:
        return len(self._file_shape)

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_file": None, "_fd": None}

    def _dataset(self) -> h5py.Dataset:
        if self._file is None:
            self._file = h5py.File(self.path, "r")
            self._fd = None
        return self._file[self.key]

    def close(self) -> None:
        """Close the file handle (reopened by the next read)."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self._fd = None

    def subset(self, positions: np.ndarray) -> "H5Rows":
        """A lazy view of some of these rows (positions into this view)."""
        positions = np.asarray(positions, dtype=np.int64)
        view = H5Rows.__new__(H5Rows)
        view.__dict__.update(self.__getstate__())
        view.rows = self.rows[positions]
        view._offsets = None if self._offsets is None else self._offsets[positions]
        return view

    def direct(self) -> bool:
        """Whether rows are read at their chunks' offsets (every row one uncompressed chunk, all
        allocated, a plain file); False where they are read through h5py."""
        return self._direct_fd() is not None

    def _direct_fd(self) -> int | None:
        """The open file's descriptor for direct reads, or None where the layout does not allow them."""
        dset = self._dataset()
        if self._fd is None:
            self._fd = self._check_direct(dset)
        return None if self._fd is False else self._fd

    def _check_direct(self, dset: h5py.Dataset) -> int | bool:
        """The open file's descriptor once this view's chunk offsets are known and verified; False
        where rows must be read through h5py."""
        f = self._file
        if not len(self.rows) or f.driver != "sec2" or f.userblock_size != 0:
            return False
        fd = f.id.get_vfd_handle()
        if not isinstance(fd, int) or fd < 0:
            return False
        st = os.fstat(fd)
        identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if self._offsets is None or self._identity != identity:
            self._offsets, self._identity = chunk_offsets(dset, self.rows), identity
        if self._offsets is None:
            return False
        for pos in sorted({0, len(self.rows) - 1}):  # the offsets must mean what h5py reads
            row = int(self.rows[pos])
            expected = np.empty((1, *self._file_shape[1:]), dtype=self.dtype)
            dset.read_direct(expected, np.s_[row : row + 1])
            got = np.empty_like(expected)
            try:
                pread_rows(fd, self._offsets[pos : pos + 1], got, self.path)
            except OSError:
                return False
            if expected.tobytes() != got.tobytes():
                return False
        return fd

    def read(self, positions: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The rows at ``positions`` (any order, repeats allowed) as one array, written into ``out``
        (shape (len(positions), ...), this dtype) when given."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        wanted = self.rows[positions]
        shape = (len(wanted), *self._file_shape[1:])
        if out is None:
            out = np.empty(shape, dtype=self.dtype)
        elif out.shape != shape or out.dtype != self.dtype:
            raise ValueError(f"out must be {self.dtype} {shape}, got {out.dtype} {out.shape}")
        if not len(wanted):
            return out
        fd = self._direct_fd()
        if fd is not None and out.flags.c_contiguous:
            return pread_rows(fd, self._offsets[positions], out, self.path)
        uniq, inverse = np.unique(wanted, return_inverse=True)  # sorted file rows, read once each
        in_place = out.flags.c_contiguous and np.array_equal(uniq, wanted)
        target = out if in_place else np.empty((len(uniq), *shape[1:]), dtype=self.dtype)
        dset = self._dataset()
        for pos, row, n in runs(uniq):
            dset.read_direct(target, np.s_[row : row + n], np.s_[pos : pos + n])
        if not in_place:
            out[...] = target[inverse.reshape(-1)]
        return out

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
