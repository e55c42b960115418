"""float32 against bfloat16 autocast on this machine, side by side in one run: training steps of
the compact network (the pretraining loop's inner step), forwards of its prepared copy (what the
point search runs), and the point search itself on the same images (time, flip rate, and how
often both precisions pick the same pixel).

bfloat16 pays on a CPU only when it has bfloat16 instructions (AVX512_BF16 or AMX); elsewhere it
is emulated and slower. Run this before setting ``precision: bfloat16`` in a config. Prints the
ratios last, with the peak resident memory of the process.

Usage (from the repository root):
  .venv/bin/python benchmarks/precision.py [--width 32] [--images 300] [--threads 2]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
import torch.nn.functional as F

from pasm.nn.inference import autocast, inference_model
from pasm.nn.models import CompactResNet
from pasm.search import SearchParams, find_points
from pasm.train.training import TrainParams, train

COMPARED = ("float32", "bfloat16")  # the two precisions set side by side


def train_rate(width: int, precision: str, batch: int, steps: int, size: int) -> float:
    """Training images/s of SGD steps on random batches (forward, loss, backward, update)."""
    torch.manual_seed(0)
    model = CompactResNet(7, width).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (batch,))

    def step() -> None:
        with autocast("cpu", precision):
            logits = model(x).float()
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t0)


def forward_rate(model: torch.nn.Module, precision: str, batch: int, seconds: float, size: int) -> float:
    """Forward images/s of the prepared (folded, channels_last) copy at ``precision``."""
    net = inference_model(model, "cpu", precision)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(3):
            net(x)
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            net(x)
            n += batch
    return n / (time.perf_counter() - t0)


def trained_model(width: int, size: int) -> tuple[torch.nn.Module, np.ndarray, np.ndarray]:
    """A compact network trained briefly on a learnable synthetic task (class = bright quadrant
    pattern), so that the search has confident, correct predictions to attack."""
    rng = np.random.default_rng(0)
    n = 1400
    labels = rng.integers(0, 7, n)
    images = rng.integers(0, 60, (n, size, size, 3)).astype(np.uint8)
    half = size // 2
    for k, c in enumerate(labels):
        if c & 1:
            images[k, :half, :half] += 120
        if c & 2:
            images[k, half:, :half] += 120
        if c & 4:
            images[k, :half, half:] += 120
        if c == 0:
            images[k, half:, half:] += 120
    model = CompactResNet(7, width)
    train(
        model,
        images,
        labels,
        TrainParams(epochs=3, batch_size=64, lr=0.05, lr_milestones=[], crop_pad=2, seed=0),
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        progress=False,
    )
    return model, images, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--images", type=int, default=300, help="images searched at each precision")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    train_s = {p: train_rate(args.width, p, 128, 12, args.size) for p in COMPARED}
    rows.append(("training step, batch 128 (img/s)", train_s))
    model, images, labels = trained_model(args.width, args.size)
    for batch in (50, 256):
        rows.append(
            (
                f"prepared forward, batch {batch} (img/s)",
                {p: forward_rate(model, p, batch, 1.5, args.size) for p in COMPARED},
            )
        )
    found, search_s = {}, {}
    for p in COMPARED:
        params = SearchParams(population=8, generations=3, seed=0, precision=p)
        t0 = time.perf_counter()
        found[p] = find_points(
            model,
            images[: args.images],
            labels[: args.images],
            mean=(0.5,) * 3,
            std=(0.25,) * 3,
            params=params,
            progress=False,
        )
        search_s[p] = args.images / (time.perf_counter() - t0)
    rows.append((f"DE search 8 x 3, {args.images} images (img/s)", search_s))

    print(
        f"compact w{args.width} at {args.size} px, {args.threads} threads; "
        f"{torch.backends.cpu.get_cpu_capability()} kernels"
    )
    print(f"{'':44s} {'float32':>10s} {'bfloat16':>10s} {'bf16/fp32':>10s}")
    for name, values in rows:
        print(
            f"{name:44s} {values['float32']:10.0f} {values['bfloat16']:10.0f} "
            f"{values['bfloat16'] / values['float32']:10.2f}"
        )
    a, b = found["float32"], found["bfloat16"]
    same = np.mean((a["x"] == b["x"]) & (a["y"] == b["y"]))
    print(
        f"search flip rate: float32 {a['flipped'].mean():.3f}, bfloat16 {b['flipped'].mean():.3f}; "
        f"same best pixel in {same:.1%} of {args.images} images"
    )
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
