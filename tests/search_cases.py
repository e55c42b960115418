"""Shared fixtures of the point-search tests: normalisation, a small random CNN case, result equality."""

from __future__ import annotations

import numpy as np
import torch

MEAN = (0.5, 0.4, 0.3)
STD = (0.25, 0.2, 0.3)


def normalise(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


def random_cnn_case(n: int = 30, size: int = 12, seed: int = 0):
    """A small random CNN with recentred logits (balanced classes, small margins, so single pixels
    flip some images early, some late and some never), random images, labels = clean predictions
    except three deliberately wrong ones."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveMaxPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 4),
    )
    images = np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    with torch.no_grad():
        logits = model(normalise(images))
        model[-1].bias -= logits.mean(0)
        labels = model(normalise(images)).argmax(1).numpy().astype(np.int64)
    wrong = [i for i in (1, 7, 20) if i < n]
    labels[wrong] = (labels[wrong] + 1) % 4
    return model, images, labels


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
