"""Training batches read from in-memory or on-demand images (pasm.data.rows.H5Rows), a few batches
ahead in a background thread, so a stage holds a few batches whatever the data set's size."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from pasm.data.rows import H5Rows

T = TypeVar("T")
U = TypeVar("U")


def prefetched(fn: Callable[[T], U], items: Iterable[T], depth: int = 2) -> Iterator[U]:
    """fn(item) for every item, in order, with up to ``depth`` calls running ahead in one thread
    (reads overlap the training step: file reads and torch's kernels both release the GIL)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pasm-read") as pool:
        pending: deque = deque()
        it = iter(items)
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) >= depth:
                break
        while pending:
            result = pending.popleft().result()
            for item in it:
                pending.append(pool.submit(fn, item))
                break
            yield result


def read_rows(images: Any, idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Rows ``idx`` of an image array or H5Rows as one C-contiguous array, written into ``out``
    (shape (len(idx), ...)) when given."""
    if isinstance(images, H5Rows):
        return images.read(idx, out=out)
    if isinstance(images, np.ndarray):
        if out is None:
            return np.ascontiguousarray(images[idx])
        if len(idx) and (idx.min() < -len(images) or idx.max() >= len(images)):
            raise IndexError(f"rows {idx.min()}..{idx.max()} outside an array of {len(images)} rows")
        return np.take(images, idx, axis=0, out=out, mode="wrap")  # "raise" would copy twice
    rows = np.ascontiguousarray(images[idx])
    if out is None:
        return rows
    out[...] = rows
    return out


@dataclass
class Batch:
    """One training batch on the host: uint8 (B, H, W, C) images, the teacher's clean copies of the
    same rows (None without a teacher), and int64 labels."""

    idx: np.ndarray
    images: torch.Tensor
    clean: torch.Tensor | None
    labels: torch.Tensor


class BatchReader:
    """Reads training batches (``reader(idx)``), the teacher's copy in a second thread beside the
    student's images, into reused host buffers.

    With ``pin`` (training on CUDA) the buffers are page-locked, taken from torch's pinned-memory
    cache, which reuses a block only once the copies made from it have completed, so a batch can
    be copied to the device with ``non_blocking=True``. Otherwise each of ``ring`` buffers is
    reused ``ring`` batches later: a caller must be done with a batch by then (the consumer of
    ``prefetched(reader, ..., depth)`` holds one batch while ``depth`` more are read, so
    ``ring > depth`` is safe).
    """

    def __init__(
        self,
        images: Any,
        clean: Any | None,
        labels: torch.Tensor,
        *,
        pin: bool = False,
        ring: int = 4,
    ) -> None:
        if clean is not None and tuple(clean.shape) != tuple(images.shape):
            raise ValueError(f"clean images {tuple(clean.shape)} differ from images {tuple(images.shape)}")
        self.images, self.clean, self.labels = images, clean, labels.cpu()
        self.pin, self.ring = pin, max(int(ring), 1)
        self._row_shape = tuple(images.shape[1:])
        self._dtype = torch.from_numpy(np.empty(0, dtype=images.dtype)).dtype
        self._buffers: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self._calls = 0
        self._pool = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="pasm-read-clean")
            if clean is not None
            else None
        )

    def _buffer(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Host tensors for a batch of n rows (images, clean)."""
        shape = (n, *self._row_shape)
        if self.pin:
            return (
                torch.empty(shape, dtype=self._dtype, pin_memory=True),
                torch.empty(shape, dtype=self._dtype, pin_memory=True) if self.clean is not None else None,
            )
        slot = self._calls % self.ring
        self._calls += 1
        if slot == len(self._buffers) or len(self._buffers[slot][0]) < n:
            full = (
                torch.empty(shape, dtype=self._dtype),
                torch.empty(shape, dtype=self._dtype) if self.clean is not None else None,
            )
            if slot == len(self._buffers):
                self._buffers.append(full)
            else:
                self._buffers[slot] = full
        images, clean = self._buffers[slot]
        return images[:n], None if clean is None else clean[:n]

    def __call__(self, idx: np.ndarray) -> Batch:
        idx = np.asarray(idx, dtype=np.int64)
        images, clean = self._buffer(len(idx))
        pending = None
        if clean is not None:
            pending = self._pool.submit(read_rows, self.clean, idx, clean.numpy())
        try:
            read_rows(self.images, idx, images.numpy())
        finally:  # the teacher's read is over before an error leaves, its buffer untouched after
            if pending is not None:
                wait([pending])
        if pending is not None:
            pending.result()
        labels = self.labels[torch.from_numpy(idx)]
        return Batch(idx, images, clean, labels.pin_memory() if self.pin else labels)

    def close(self) -> None:
        """Stop the teacher's reading thread and drop the buffers."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._buffers = []

    def __enter__(self) -> "BatchReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
