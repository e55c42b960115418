"""Erasing augmentations of the paper's baselines (Table 6): Zhong et al.'s random erasing, and
Wei et al.'s adversarial erasing of the class-activation region."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pasm.nn.inputs import to_input


def random_erasing(
    x: torch.Tensor,
    generator: torch.Generator,
    probability: float,
    area: Sequence[float],
    aspect: Sequence[float],
) -> torch.Tensor:
    """Zhong et al.'s random erasing on a float (B, 3, H, W) batch of 0..255 values: with the given
    probability per image, one rectangle of area fraction U(area) and log-uniform aspect ratio
    U(aspect) (clipped to the image) at a uniform position is filled with uniform random values.

    The random numbers are drawn from ``generator`` on its device and used on x's: a generator
    on the training device keeps the host out of the step.
    """
    b, _, h, w = x.shape
    dev = x.device
    u = torch.rand(b, 5, generator=generator, device=generator.device).to(dev)
    frac = area[0] + (area[1] - area[0]) * u[:, 0]
    ratio = torch.exp(math.log(aspect[0]) + (math.log(aspect[1]) - math.log(aspect[0])) * u[:, 1])
    eh = torch.sqrt(frac * h * w * ratio).round().clamp(1, h).long()
    ew = torch.sqrt(frac * h * w / ratio).round().clamp(1, w).long()
    top = (u[:, 2] * (h - eh + 1)).long()
    left = (u[:, 3] * (w - ew + 1)).long()
    erase = u[:, 4] < probability
    rows = torch.arange(h, device=dev)[None, :]
    cols = torch.arange(w, device=dev)[None, :]
    inside = (
        ((rows >= top[:, None]) & (rows < (top + eh)[:, None]))[:, :, None]
        & ((cols >= left[:, None]) & (cols < (left + ew)[:, None]))[:, None, :]
        & erase[:, None, None]
    )
    noise = torch.rand(x.shape, generator=generator, device=generator.device) * 255.0
    return torch.where(inside[:, None], noise.to(dev), x)


class RandomErasing:
    """random_erasing with fixed settings, in the (batch, generator) form the training loop calls."""

    def __init__(self, probability: float, area: Sequence[float], aspect: Sequence[float]) -> None:
        self.probability, self.area, self.aspect = probability, tuple(area), tuple(aspect)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return random_erasing(x, generator, self.probability, self.area, self.aspect)


def feature_layer(model: torch.nn.Module, arch: str) -> torch.nn.Module:
    """The last convolutional stage, whose activations give the class activation map."""
    if arch == "compact":
        return model.blocks
    if arch.startswith("resnet"):
        return model.layer4
    if arch == "vgg16":
        return model.features
    raise ValueError(f"no class activation layer known for arch {arch!r}")


def class_activation_maps(
    model: torch.nn.Module,
    arch: str,
    images: np.ndarray,
    labels: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    batch_size: int = 50,
    device: str = "cpu",
) -> np.ndarray:
    """(N, H, W) float32 Grad-CAM of each image's true class, upsampled to the image and scaled to
    max 1 (all zero where no activation supports the class); the region Wei et al. erase."""
    model.eval()
    layer = feature_layer(model, arch)
    acts: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _m, _i, out: acts.append(out))
    out = []
    try:
        for s in range(0, len(images), batch_size):
            acts.clear()
            x = to_input(
                torch.from_numpy(np.ascontiguousarray(images[s : s + batch_size])).to(device), mean, std
            )
            y = torch.from_numpy(np.asarray(labels[s : s + batch_size], dtype=np.int64)).to(device)
            logits = model(x)
            feat = acts[-1]
            (grad,) = torch.autograd.grad(logits.gather(1, y[:, None]).sum(), feat)
            cam = F.relu((grad.mean(dim=(2, 3), keepdim=True) * feat).sum(1, keepdim=True))
            cam = F.interpolate(cam, size=images.shape[1:3], mode="bilinear", align_corners=False)[:, 0]
            peak = cam.flatten(1).max(1).values.clamp_min(1e-12)[:, None, None]
            out.append((cam / peak).detach().cpu().numpy().astype(np.float32))
    finally:
        hook.remove()
    return np.concatenate(out) if out else np.zeros((0, *images.shape[1:3]), np.float32)


def erase_regions(images: np.ndarray, maps: np.ndarray, threshold: float, fill: Sequence[int]) -> np.ndarray:
    """Copy of uint8 (N, H, W, 3) images with pixels where maps > threshold set to the fill colour."""
    out = images.copy()
    out[maps > threshold] = np.asarray(fill, dtype=np.uint8)
    return out
