"""Shared pieces of the prediction and export tests: the face photographs and a tiny real model file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pasm.data.labels import CLASSES
from pasm.data.preparation import face_preparation
from pasm.nn.models import IMAGENET_MEAN, IMAGENET_STD, build_model, save_model

REPO = Path(__file__).resolve().parents[1]
FACES = (Path(__file__).parents[1] / ".." / "shared" / "images" / "faces").resolve()
PHOTOS = ("angry.jpg", "sad_hand_over_mouth.jpg")
SIZE = 48


def photo(name: str) -> Path:
    """Path of one shared face photograph; skips the test when the shared data is not there."""
    path = FACES / name
    if not path.is_file():
        pytest.skip(f"shared face photograph {path} not found (the repository's ../shared/images/faces)")
    return path


def tiny_model_file(path: Path, fmt: str = "demo", seed: int = 0, alignment: dict | None = None) -> Path:
    """Save a seeded compact CNN (width 8, 48 px) with non-trivial batch-norm statistics and a complete meta.

    `fmt` picks the data set format the meta claims (fer2013: grey training faces); `alignment`
    replaces the stored alignment record (e.g. the incomplete one of older model files).
    """
    torch.manual_seed(seed)
    model = build_model("compact", len(CLASSES), 8)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=gen) * 0.2)
                module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
        model.fc.weight.mul_(8.0)  # spread the logits so probabilities are far from uniform
    meta = {
        "arch": "compact",
        "width": 8,
        "classes": list(CLASSES),
        "image_size": SIZE,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "alignment": face_preparation(fmt, SIZE, {}, pre_aligned=True) if alignment is None else alignment,
        "dataset": fmt,
        "round": 0,
        "config": {},
    }
    save_model(path, model.eval(), meta)
    return path
