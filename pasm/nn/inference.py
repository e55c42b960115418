"""Forward passes of a trained network: the device, a copy prepared for fast forwards (search,
prediction), and batched logits of uint8 images (evaluation, validation)."""

from __future__ import annotations

import copy
from contextlib import AbstractContextManager, nullcontext
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.fx.experimental.optimization import fuse
from torch.fx.proxy import TraceError

from pasm.nn.inputs import to_input

__all__ = ["PRECISIONS", "autocast", "autocast_dtype", "inference_model", "predict_logits", "resolve_device"]

PRECISIONS = ("auto", "bfloat16", "float32")
"""Forward-pass precisions: auto is bfloat16 on CUDA and float32 on CPU. bfloat16 on a CPU pays only
where it has bfloat16 instructions (AVX512_BF16 or AMX; ``python benchmarks/precision.py``)."""


def autocast_dtype(device: str | torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype of forwards on ``device`` at ``precision`` (one of PRECISIONS); None: float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if precision == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else None
    return torch.bfloat16 if precision == "bfloat16" else None


def autocast(device: str | torch.device, precision: str) -> AbstractContextManager:
    """A context in which forwards run at ``precision`` on ``device`` (weights and gradients stay float32)."""
    dtype = autocast_dtype(device, precision)
    return nullcontext() if dtype is None else torch.autocast(torch.device(device).type, dtype=dtype)


class _Autocast(nn.Module):
    """Runs the wrapped network's forward under autocast, so every caller gets the same precision."""

    def __init__(self, net: nn.Module, device: str | torch.device, precision: str) -> None:
        super().__init__()
        self.net, self.device, self.precision = net, device, precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.precision):
            return self.net(x)


def inference_model(
    model: torch.nn.Module, device: str | torch.device = "cpu", precision: str = "auto"
) -> torch.nn.Module:
    """An eval-mode copy of ``model`` on ``device`` with every convolution+batch-norm pair folded
    into one convolution and channels_last weights, its forward at ``precision`` (PRECISIONS);
    the caller's model is left untouched.

    Both matter on CPU too: for the compact ResNet at 48 px, batch 50, 2 threads, forwards went
    from 650 to 1750 images/s (``python benchmarks/point_search.py`` prints the floor). A model
    without batch norm is not traced at all; one that torch.fx cannot trace (data-dependent control
    flow, Python calls on tensors) is used unfolded.
    """
    prepared = copy.deepcopy(model).eval()
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in prepared.modules()):
        try:
            prepared = fuse(prepared)
        except (TraceError, RuntimeError, TypeError, NotImplementedError):
            pass
    prepared = prepared.to(device=torch.device(device), memory_format=torch.channels_last)
    return prepared if autocast_dtype(device, precision) is None else _Autocast(prepared, device, precision)


def resolve_device(name: str) -> str:
    """Map a device setting ('auto', 'cpu', 'cuda') to a torch device string; 'cuda' without a GPU is an
    error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but torch sees no CUDA device")
    return name


def predict_logits(
    model: nn.Module,
    images: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    batch_size: int = 50,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Logits (N, C) of uint8 (N, H, W, 3) images, in eval and inference mode."""
    was_training = model.training
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(device)
            out.append(model(to_input(chunk, mean, std)).float().cpu())
    model.train(was_training)
    if not out:
        return np.zeros((0, 0), np.float32)
    return torch.cat(out).numpy()
