"""Training batches read from in-memory or on-demand images (pasm.data.rows.H5Rows), one batch
ahead in a background thread, so a stage holds a few batches whatever the data set's size."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import torch

T = TypeVar("T")
U = TypeVar("U")


def prefetched(fn: Callable[[T], U], items: Iterable[T], depth: int = 2) -> Iterator[U]:
    """fn(item) for every item, in order, with up to ``depth`` calls running ahead in one thread
    (reads overlap the training step: h5py reads and torch's kernels both release the GIL)."""
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


def read_batch(images: Any, clean: Any | None, idx: np.ndarray) -> torch.Tensor:
    """uint8 (B, C, H, W) batch of rows ``idx``: the images' 3 channels, then the clean images'
    3 when a teacher needs them (both get the same crop and flip)."""
    x = torch.from_numpy(np.ascontiguousarray(images[idx])).permute(0, 3, 1, 2)
    if clean is None:
        return x
    return torch.cat([x, torch.from_numpy(np.ascontiguousarray(clean[idx])).permute(0, 3, 1, 2)], 1)
