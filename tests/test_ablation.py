"""Ablation building blocks: random erasing, class-activation erasing, variant names, the table."""

import numpy as np
import pytest
import torch

from pasm.nn.models import build_model
from pasm.train.erasing import class_activation_maps, erase_regions, random_erasing
from pasm.workflow.ablation import variant_names


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
        assert erased[b, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
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
    assert variant_names(abl) == [
        "random_erasing",
        "pasm_seeded",
        "mask_size_5",
        "mask_size_9",
        "beta_0.5",
        "beta_0.01",
    ]


def test_variant_table_says_what_each_variant_trains_on():
    from pasm.workflow.ablation import variant_table

    abl = {
        "variants": ["random_erasing", "adv_erasing", "pasm_noteacher", "pasm_seeded", "cross_network"],
        "mask_sizes": [5],
        "betas": [0.5],
    }
    table = variant_table(abl)
    assert table["random_erasing"].images == "clean" and table["random_erasing"].erasing == "random_erasing"
    assert (table["random_erasing"].alpha, table["random_erasing"].beta) == (1.0, 0.0)
    assert table["pasm_noteacher"].images == "round1_masks" and table["pasm_noteacher"].beta == 0.0
    assert table["pasm_seeded"].images == "own_masks" and table["pasm_seeded"].points == "seeded"
    assert table["pasm_seeded"].beta is None  # method.beta: Eq. 4 with the teacher
    assert table["cross_network"].learner == "cross_network" and table["cross_network"].beta == 0.0
    assert table["mask_size_5"].images == "own_masks" and table["mask_size_5"].mask_size == 5
    assert table["beta_0.5"].images == "round1_masks" and table["beta_0.5"].beta == 0.5
    with pytest.raises(TypeError):
        table["x"] = table["beta_0.5"]  # frozen: read by the rules, training and the table alike
    with pytest.raises(AttributeError):
        table["beta_0.5"].beta = 0.1


def test_unknown_cam_arch_is_named():
    with pytest.raises(ValueError, match="'lenet'"):
        class_activation_maps(
            build_model("compact", 7, 8),
            "lenet",
            np.zeros((1, 16, 16, 3), np.uint8),
            np.zeros(1),
            (0.5,) * 3,
            (0.25,) * 3,
        )
