"""Tensor augmentation: normalisation, crop windows, and identical views for stacked copies."""

import torch

from pasm.nn.inputs import to_input
from pasm.train.augment import random_crop_flip


def test_to_input_normalises_hwc_and_chw():
    x = torch.full((2, 4, 4, 3), 255, dtype=torch.uint8)
    out = to_input(x, (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    assert out.shape == (2, 3, 4, 4)
    assert torch.allclose(out[:, 0], torch.tensor(2.0)) and torch.allclose(out[:, 2], torch.tensor(0.5))


def test_no_pad_no_flip_is_identity():
    x = torch.rand(3, 3, 8, 8)
    assert torch.equal(random_crop_flip(x, 0, False, torch.Generator().manual_seed(0)), x)


def test_crop_is_a_window_of_the_padded_image():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    out = random_crop_flip(x, 2, False, torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for b in range(2):
        found = any(
            torch.equal(out[b, 0], padded[b, 0, oy : oy + 6, ox : ox + 6])
            for oy in range(5)
            for ox in range(5)
        )
        assert found


def test_stacked_copies_get_the_same_view():
    clean = torch.rand(16, 3, 10, 10)
    stacked = torch.cat([clean, clean * 2], 1)
    out = random_crop_flip(stacked, 3, True, torch.Generator().manual_seed(1))
    assert torch.allclose(out[:, 3:], out[:, :3] * 2)
    assert not torch.equal(out[:, :3], clean)  # something did move
