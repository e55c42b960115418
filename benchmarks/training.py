"""Training images/s of pasm's loop against the floor: the model's own forward+backward+step on
random tensors of the same shape, measured side by side in one run.

Usage (from the repository root): .venv/bin/python benchmarks/training.py [width] [size] [n]
"""

from __future__ import annotations

import sys
import tempfile
import time

import h5py
import numpy as np
import torch

from pasm.data.rows import H5Rows
from pasm.nn.models import IMAGENET_MEAN, IMAGENET_STD, build_model
from pasm.train.training import TrainParams, train


def floor_rate(width: int, size: int, n: int, batch: int, channels_last: bool = True) -> float:
    """Images/s of plain SGD steps on pre-made float tensors (no data handling at all), in the
    memory format pasm's loop uses (channels_last) unless told otherwise."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model("compact", 7, width).to(memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x, y = torch.randn(batch, 3, size, size).contiguous(memory_format=fmt), torch.randint(0, 7, (batch,))
    start = time.perf_counter()
    for _ in range(n // batch):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (n // batch) * batch / (time.perf_counter() - start)


def loop_rate(width: int, size: int, n: int, batch: int, from_file: str | None = None) -> float:
    """Images/s of pasm.train.training.train for one epoch over n uint8 images (augmentation
    included), held in memory or (``from_file``) read batch by batch from an HDF5 file as the stages do."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, 7, n)
    if from_file:
        with h5py.File(from_file, "w") as f:
            f.create_dataset("images", data=images, chunks=(1, size, size, 3))
        images = H5Rows(from_file)
    params = TrainParams(epochs=1, batch_size=batch, lr=0.01, lr_milestones=[1], crop_pad=4)
    hist = train(
        build_model("compact", 7, width),
        images,
        labels,
        params,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        progress=False,
    )
    return hist[0]["images_per_s"]


def main() -> None:
    width = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 48
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 4096
    torch.set_num_threads(2)
    floor_rate(width, size, 256, 128)  # warm-up
    plain = floor_rate(width, size, n, 128, channels_last=False)
    floor, ours = floor_rate(width, size, n, 128), loop_rate(width, size, n, 128)
    with tempfile.TemporaryDirectory() as tmp:
        streamed = loop_rate(width, size, n, 128, from_file=f"{tmp}/faces.h5")
    print(f"compact width {width}, {size}x{size}, batch 128, {n} images")
    print(f"floor, NCHW (forward+backward+step on random tensors):     {plain:8.1f} img/s")
    print(f"floor, channels_last (the memory format pasm's loop uses): {floor:8.1f} img/s")
    print(f"pasm training loop:                                        {ours:8.1f} img/s")
    print(f"pasm training loop, batches read from HDF5 (the stages):   {streamed:8.1f} img/s")
    print(f"floor / loop: {floor / ours:.2f}x   (loop / NCHW floor: {ours / plain:.2f}x)")
    print(f"in memory / from HDF5: {ours / streamed:.2f}x")


if __name__ == "__main__":
    main()
