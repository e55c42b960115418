"""Ablation building blocks: random erasing, class-activation erasing, variant names, the table."""

import numpy as np
import pytest
import torch

from pasm.ablation import class_activation_maps, erase_regions, random_erasing, variant_names
from pasm.models import build_model


def test_random_erasing_rectangles_area_and_probability():
    gen = torch.Generator().manual_seed(0)
    x = torch.full((400, 3, 40, 40), -1.0)  # marker value erasing never writes (it fills 0..255)
    out = random_erasing(x, gen, probability=0.5, area=(0.02, 0.4), aspect=(0.3, 3.3))
    erased = (out != -1.0).all(dim=1)  # (B, H, W): all channels rewritten
    share = erased.float().mean(dim=(1, 2))
    hit = share > 0
    assert 0.4 < hit.float().mean() < 0.6
    assert (share[hit] >= 0.005).all() and (share[hit] <= 0.45).all()  # area 2-40 %, rounding and clipping
    for b in torch.nonzero(hit)[:20, 0]:  # each erased region is one axis-aligned rectangle
        rows, cols = torch.nonzero(erased[b], as_tuple=True)
        assert erased[b, rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
    assert (out[~(out == -1.0)] >= 0).all() and (out <= 255).all()
    again = random_erasing(x, torch.Generator().manual_seed(0), 0.5, (0.02, 0.4), (0.3, 3.3))
    assert torch.equal(out, again)  # seeded


def test_class_activation_maps_follow_the_evidence():
    torch.manual_seed(0)
    model = build_model("compact", 7, 8).eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(6) % 7
    maps = class_activation_maps(model, "compact", images, labels, (0.5,) * 3, (0.25,) * 3, batch_size=4)
    assert maps.shape == (6, 32, 32) and maps.dtype == np.float32
    assert (maps >= 0).all() and (maps <= 1 + 1e-6).all()
    peaks = maps.reshape(6, -1).max(1)
    assert np.all((np.isclose(peaks, 1.0)) | (peaks == 0))
    erased = erase_regions(images, maps, 0.7, (124, 116, 104))
    changed = (erased != images).any(-1)
    assert not changed[maps <= 0.7].any()
    assert (erased[maps > 0.7] == (124, 116, 104)).all()


def test_variant_names_include_sweeps():
    abl = {"variants": ["random_erasing", "pasm_seeded"], "mask_sizes": [5, 9], "betas": [0.5, 0.01]}
    assert variant_names(abl) == ["random_erasing", "pasm_seeded", "mask_size_5", "mask_size_9", "beta_0.5",
                                  "beta_0.01"]


def test_unknown_cam_arch_is_named():
    with pytest.raises(ValueError, match="'lenet'"):
        class_activation_maps(build_model("compact", 7, 8), "lenet", np.zeros((1, 16, 16, 3), np.uint8),
                              np.zeros(1), (0.5,) * 3, (0.25,) * 3)
