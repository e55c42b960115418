"""Masks are S x S, centred on the point, filled with its RGB and clipped at the borders."""

import numpy as np

from pasm.train.masking import apply_masks, patch_bounds


def _images(n=3, h=20, w=24):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_patch_is_centred_and_filled():
    imgs = _images()
    x, y = np.array([10, 5, 12]), np.array([9, 4, 10])
    rgb = np.array([[255, 0, 0], [1, 2, 3], [9, 9, 9]], dtype=np.uint8)
    out = apply_masks(imgs, x, y, rgb, 5)
    for i in range(3):
        patch = out[i, y[i] - 2 : y[i] + 3, x[i] - 2 : x[i] + 3]
        assert (patch == rgb[i]).all()
        changed = (out[i] != imgs[i]).any(-1)
        # nothing outside the 5x5 window changed
        outside = np.ones_like(changed)
        outside[y[i] - 2 : y[i] + 3, x[i] - 2 : x[i] + 3] = False
        assert not changed[outside].any()


def test_patch_clips_at_the_border_and_input_is_untouched():
    imgs = _images(1)
    before = imgs.copy()
    out = apply_masks(imgs, np.array([0]), np.array([19]), np.array([[7, 7, 7]], np.uint8), 7)
    filled = (out[0] == 7).all(-1)
    assert filled.sum() == 4 * 4  # rows 16..19, cols 0..3
    assert filled[16:20, 0:4].all()
    assert (imgs == before).all()


def test_even_mask_size_has_size_s():
    y0, y1, x0, x1 = patch_bounds(np.array([10]), np.array([10]), 4, 30, 30)
    assert (y1 - y0)[0] == 4 and (x1 - x0)[0] == 4
    assert y0[0] <= 10 < y1[0] and x0[0] <= 10 < x1[0]


def test_one_point_per_image_is_required():
    import pytest

    with pytest.raises(ValueError, match="one point per image"):
        apply_masks(_images(2), np.array([1]), np.array([1]), np.zeros((1, 3), np.uint8), 3)
