"""`pasm export --onnx`: a model file as one self-contained ONNX graph, checked against PyTorch.

The graph's input ``pixels`` is uint8 (N, H, W, 3): aligned faces as `pasm predict` prepares
them (aligned with the stored template, grey replicated to 3 channels when the model was trained
on grey faces). Scaling to [0, 1], the mean/std normalisation and the softmax are inside the
graph; the output ``probabilities`` is float32 (N, C). N is dynamic. The model file's class
names and face preparation are stored as JSON in the ONNX metadata property ``pasm``.

Needs the ``export`` extra (onnx, onnxscript for torch's exporter, onnxruntime for the check).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from pasm.data.atomic import atomic_path
from pasm.data.preparation import stored_preparation
from pasm.nn.inputs import to_input
from pasm.nn.models import load_model

log = logging.getLogger(__name__)

TOLERANCE = 1e-4
"""Largest absolute probability difference between ONNX Runtime and PyTorch that export accepts."""


class PixelsToProbabilities(nn.Module):
    """uint8 (N, H, W, 3) faces -> class probabilities: the model with its input scaling and softmax."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        """Wrap `model` (kept in eval mode) with the normalisation it was trained with."""
        super().__init__()
        self.model = model.eval()
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """The same arithmetic as `pasm.train.augment.to_input`, then softmax over classes."""
        return torch.softmax(self.model(to_input(pixels.permute(0, 3, 1, 2), self.mean, self.std)), dim=1)


def torch_probabilities(
    model: nn.Module, pixels: np.ndarray, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """Reference probabilities (N, C) of uint8 (N, H, W, 3) faces from the PyTorch model, float32."""
    with torch.inference_mode():
        x = to_input(torch.from_numpy(np.ascontiguousarray(pixels)), mean, std)
        return torch.softmax(model.eval()(x), dim=1).numpy()


def onnx_probabilities(onnx_path: str | Path, pixels: np.ndarray) -> np.ndarray:
    """Probabilities (N, C) of uint8 (N, H, W, 3) faces from an exported graph, with ONNX Runtime on
    the CPU."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"pixels": np.ascontiguousarray(pixels, dtype=np.uint8)})[0]


def card(meta: dict[str, Any]) -> dict[str, Any]:
    """What a user of the ONNX file needs from the model file: classes, input size, face preparation,
    origin."""
    keys = ("arch", "width", "classes", "image_size", "mean", "std", "dataset", "round")
    return {
        **{k: meta[k] for k in keys if k in meta},
        "alignment": stored_preparation(meta),
        "input": "pixels: uint8 (N, H, W, 3) aligned faces; normalisation and softmax are in the graph",
        "output": "probabilities: float32 (N, classes)",
    }


def export_onnx(
    model_path: str | Path, out_path: str | Path, check: bool = True, seed: int = 0
) -> dict[str, Any]:
    """Write the ONNX graph of a model file (see the module docstring); with check, compare it to PyTorch.

    The check runs both on a seeded random uint8 batch of 5 and raises if they differ by more than
    TOLERANCE. Returns the card stored in the file plus ``max_abs_diff`` when checked.
    """
    import onnx

    model, meta = load_model(model_path, "cpu")
    size = int(meta["image_size"])
    wrapped = PixelsToProbabilities(model, meta["mean"], meta["std"]).eval()
    example = torch.zeros((2, size, size, 3), dtype=torch.uint8)
    info = card(meta)
    with atomic_path(out_path) as tmp, contextlib.redirect_stdout(sys.stderr):  # the exporter prints progress
        program = torch.onnx.export(
            wrapped,
            (example,),
            dynamo=True,
            input_names=["pixels"],
            output_names=["probabilities"],
            dynamic_shapes={"pixels": {0: torch.export.Dim.DYNAMIC}},
            optimize=True,
            verbose=False,
        )
        proto = program.model_proto
        proto.doc_string = (
            f"pasm {meta.get('arch')} expression classifier; input/output described in metadata 'pasm'"
        )
        onnx.helper.set_model_props(proto, {"pasm": json.dumps(info)})
        onnx.checker.check_model(proto)
        onnx.save_model(proto, str(tmp))
    if check:
        pixels = np.random.default_rng(seed).integers(0, 256, (5, size, size, 3), dtype=np.uint8)
        diff = float(
            np.abs(
                onnx_probabilities(out_path, pixels)
                - torch_probabilities(model, pixels, meta["mean"], meta["std"])
            ).max()
        )
        if not diff <= TOLERANCE:
            Path(out_path).unlink()
            raise RuntimeError(
                f"ONNX and PyTorch probabilities differ by {diff:.3g} (> {TOLERANCE}); removed {out_path}"
            )
        info["max_abs_diff"] = diff
        log.info("ONNX Runtime agrees with PyTorch on a random batch of 5: max |diff| %.2e", diff)
    return info
