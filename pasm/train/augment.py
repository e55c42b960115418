"""Batched augmentation on tensors (no per-image Python work): random crop and flip, drawn once and
applied identically to several batches (a student's and its teacher's copies of the same images)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Indices into a dimension of ``size`` of positions before and after it mirrored back in without
    repeating the edge (torch's "reflect" padding)."""
    return (size - 1) - ((size - 1) - index.abs()).abs()


@dataclass(frozen=True)
class CropFlip:
    """Per image of a batch: the crop window's offsets in the image reflect-padded by ``pad`` (None
    without padding) and whether it is mirrored (None without flipping)."""

    pad: int
    oy: torch.Tensor | None = None
    ox: torch.Tensor | None = None
    mirror: torch.Tensor | None = None

    @classmethod
    def draw(cls, batch: int, pad: int, flip: bool, generator: torch.Generator) -> "CropFlip":
        """Draw a batch's views from ``generator``, on its device: the y offsets, the x offsets (each
        when pad > 0), then the mirror choices (when flip)."""
        oy = ox = mirror = None
        if pad > 0:
            oy = torch.randint(0, 2 * pad + 1, (batch,), generator=generator, device=generator.device)
            ox = torch.randint(0, 2 * pad + 1, (batch,), generator=generator, device=generator.device)
        if flip:
            mirror = torch.rand(batch, generator=generator, device=generator.device) < 0.5
        return cls(pad, oy, ox, mirror)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The views of a (B, C, H, W) batch of any dtype, all channels of an image alike: the window
        of the reflect-padded image, mirrored where drawn so; one gather of whole pixels."""
        if self.oy is None and self.mirror is None:
            return x
        b, _, h, w = x.shape
        if self.pad >= min(h, w):
            raise ValueError(f"crop padding {self.pad} must be smaller than the {h}x{w} images")
        dev = x.device
        rows = torch.arange(h, device=dev).expand(b, h)
        cols = torch.arange(w, device=dev).expand(b, w)
        if self.mirror is not None:
            cols = torch.where(self.mirror.to(dev)[:, None], (w - 1) - cols, cols)
        if self.oy is not None:
            rows = _reflect(rows + (self.oy.to(dev)[:, None] - self.pad), h)
            cols = _reflect(cols + (self.ox.to(dev)[:, None] - self.pad), w)
        nhwc = x.permute(0, 2, 3, 1)
        out = nhwc[torch.arange(b, device=dev)[:, None, None], rows[:, :, None], cols[:, None, :]]
        return out.permute(0, 3, 1, 2)


def random_crop_flip(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Reflect-pad by `pad`, crop a random HxW window per image, and mirror half the images.

    The same transform is applied to all channels of an image; CropFlip.draw and apply give
    several batches (a teacher's and a student's copies) the same views.
    """
    return CropFlip.draw(x.shape[0], pad, flip, generator).apply(x)
