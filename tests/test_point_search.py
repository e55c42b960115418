"""Tests of the batched one-pixel point search (pasm.search)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from search_cases import MEAN, STD, assert_same, normalise, random_cnn_case

from pasm.search import SearchParams, find_points
from pasm.search.de import _donors, initial_population, mutate
from pasm.search.rng import image_keys, uniforms

PX, PY = 5, 2  # the planted sensitive pixel (column, row)


class PlantedModel(torch.nn.Module):
    """3-class model over 16x16 images driven by the red channel only: a red-weighted sum peaks at
    pixel (PX, PY) (weight 1; <= 0.5 elsewhere, decaying with distance); class 1 wins when it
    exceeds 0.6, so on images with no red only a bright red pixel at (PX, PY) flips class 0.
    The smooth weights give DE a slope towards the planted pixel."""

    def __init__(self, size: int = 16) -> None:
        super().__init__()
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        w = 0.5 * torch.exp(-((xx - PX) ** 2 + (yy - PY) ** 2).float() / 8.0)
        w[PY, PX] = 1.0
        self.register_buffer("w", w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = x[:, 0] * STD[0] + MEAN[0]  # back to 0..1
        s = (red * self.w).sum(dim=(1, 2))
        return torch.stack([20 * (0.6 - s), 20 * (s - 0.6), torch.full_like(s, -10.0)], dim=1)


class ConstantModel(torch.nn.Module):
    """Ignores its input: always predicts class 0 with fixed logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([2.0, 0.0, -1.0]).expand(len(x), 3).clone()


def planted_images(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """Images with no red at all (random green/blue), so the clean prediction is class 0."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    img[..., 0] = 0
    return img


def case_data(case: str):
    """(model, images, labels) of a parametrised case: the planted pixel, or the random CNN."""
    if case == "planted":
        return PlantedModel(), planted_images(8), np.zeros(8, dtype=np.int64)
    return random_cnn_case()


def run(model, images, labels, **kw):
    params = SearchParams(**{"population": 20, "generations": 10, "batch_size": 50, **kw})
    return find_points(model, images, labels, mean=MEAN, std=STD, params=params, progress=False)


def budget(params_pop: int, gens: int) -> int:
    return params_pop * (gens + 1) + 1


# --------------------------------------------------------------------------- behaviour


def test_planted_pixel_found_for_every_image():
    images = planted_images(12)
    labels = np.zeros(12, dtype=np.int64)
    out = run(PlantedModel(), images, labels, population=30, generations=40)
    assert out["clean_correct"].all()
    assert out["flipped"].all()
    np.testing.assert_array_equal(out["x"], PX)
    np.testing.assert_array_equal(out["y"], PY)
    assert (out["rgb"][:, 0] > 153).all()  # only a bright red pixel crosses the threshold


def test_early_stop_and_full_budget():
    pop, gens = 30, 40
    images = planted_images(6)
    labels = np.array([0, 0, 0, 0, 1, 2])  # last two are misclassified on the clean input
    out = run(PlantedModel(), images, labels, population=pop, generations=gens)
    full = budget(pop, gens)
    assert out["flipped"][:4].all()
    assert (out["queries"][:4] < full).all()
    # Whole populations are evaluated per generation: 1 clean + P per generation run.
    assert ((out["queries"] - 1) % pop == 0).all()
    np.testing.assert_array_equal(out["clean_correct"], [True] * 4 + [False] * 2)
    np.testing.assert_array_equal(out["queries"][4:], full)

    # A model that ignores its input can never be flipped: every image spends the full budget.
    const = run(ConstantModel(), images, np.zeros(6, dtype=np.int64), population=pop, generations=5)
    np.testing.assert_array_equal(const["queries"], budget(pop, 5))
    assert not const["flipped"].any()
    np.testing.assert_array_equal(const["prob_after"], const["prob_before"])


@pytest.mark.parametrize("case", ["planted", "cnn"])
def test_reported_pixel_reproduces_prob_after(case):
    model, images, labels = case_data(case)
    out = run(model, images, labels)
    n = len(images)
    pert = images.copy()
    pert[np.arange(n), out["y"], out["x"]] = out["rgb"]
    assert (pert != images).any(axis=(1, 2, 3)).sum() > 0
    with torch.no_grad():
        probs = model(normalise(pert)).softmax(1).numpy()
        clean = model(normalise(images)).softmax(1).numpy()
    np.testing.assert_allclose(out["prob_after"], probs[np.arange(n), labels], atol=1e-5)
    np.testing.assert_allclose(out["prob_before"], clean[np.arange(n), labels], atol=1e-5)
    np.testing.assert_array_equal(out["flipped"], probs.argmax(1) != labels)
    np.testing.assert_array_equal(out["clean_correct"], clean.argmax(1) == labels)


def test_output_types_and_ranges():
    model, images, labels = random_cnn_case()
    out = run(model, images, labels)
    n, h, w = images.shape[:3]
    expected = {
        "x": np.int32,
        "y": np.int32,
        "rgb": np.uint8,
        "prob_before": np.float32,
        "prob_after": np.float32,
        "flipped": np.bool_,
        "queries": np.int32,
        "clean_correct": np.bool_,
    }
    assert set(out) == set(expected)
    for k, dt in expected.items():
        assert out[k].dtype == dt, k
        assert len(out[k]) == n, k
    assert out["rgb"].shape == (n, 3)
    assert ((0 <= out["x"]) & (out["x"] < w)).all() and ((0 <= out["y"]) & (out["y"] < h)).all()
    assert (out["queries"] >= 1 + 20).all() and (out["queries"] <= budget(20, 10)).all()
    # The case mixes early flips, late flips and full-budget images.
    assert out["flipped"][out["clean_correct"]].any()
    assert len(np.unique(out["queries"])) >= 3


def test_deterministic_and_seed_dependent():
    model, images, labels = random_cnn_case()
    a = run(model, images, labels, seed=3)
    b = run(model, images, labels, seed=3)
    assert_same(a, b)
    c = run(model, images, labels, seed=4)
    assert (a["x"] != c["x"]).any() or (a["y"] != c["y"]).any()
    assert (a["queries"] != c["queries"]).any() or (a["rgb"] != c["rgb"]).any()


def test_independent_of_batch_size():
    model, images, labels = random_cnn_case()
    a = run(model, images, labels, batch_size=7)
    b = run(model, images, labels, batch_size=50)
    for k in ("x", "y", "rgb", "flipped", "queries", "clean_correct"):
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    np.testing.assert_allclose(a["prob_after"], b["prob_after"], atol=1e-6)


def test_shard_reproduces_full_run():
    model, images, labels = random_cnn_case()
    full = run(model, images, labels)
    params = SearchParams(population=20, generations=10)
    part = find_points(
        model,
        images[10:20],
        labels[10:20],
        mean=MEAN,
        std=STD,
        params=params,
        progress=False,
        indices=np.arange(10, 20),
    )
    assert_same(part, {k: v[10:20] for k, v in full.items()})
    # Without the global indices the shard's random streams differ.
    other = find_points(
        model, images[10:20], labels[10:20], mean=MEAN, std=STD, params=params, progress=False
    )
    assert any((other[k] != full[k][10:20]).any() for k in ("x", "y", "rgb"))


@pytest.mark.parametrize("case", ["planted", "cnn"])
def test_prob_never_increases_and_input_untouched(case):
    model, images, labels = case_data(case)
    before = images.copy()
    labels_before = labels.copy()
    model.train()
    out = run(model, images, labels)
    np.testing.assert_array_equal(images, before)
    np.testing.assert_array_equal(labels, labels_before)
    assert (out["prob_after"] <= out["prob_before"]).all()
    assert model.training  # the caller's mode is restored


def test_read_only_and_empty_inputs():
    model, images, labels = random_cnn_case(n=4)
    images.setflags(write=False)
    out = run(model, images, labels, generations=2)
    assert len(out["x"]) == 4
    empty = run(model, images[:0], labels[:0])
    assert all(len(v) == 0 for v in empty.values())
    with pytest.raises(ValueError):
        run(model, images, labels, population=3)
    with pytest.raises(ValueError):
        run(model, images.astype(np.float32), labels)


# --------------------------------------------------------------------------- building blocks


def test_uniforms_are_per_image_counter_based():
    keys = image_keys(7, np.arange(50))
    u = uniforms(keys, 3, (40, 3))
    assert u.shape == (50, 40, 3) and (u >= 0).all() and (u < 1).all()
    assert abs(u.mean() - 0.5) < 0.02
    np.testing.assert_array_equal(uniforms(keys[[4, 9]], 3, (40, 3)), u[[4, 9]])
    assert not np.array_equal(uniforms(keys, 4, (40, 3)), u)
    assert not np.array_equal(image_keys(8, np.arange(50)), keys)


def test_donors_distinct_and_not_self():
    pop = 5
    u = uniforms(image_keys(0, np.arange(400)), 1, (pop, 3))
    r1, r2, r3 = _donors(u)
    own = np.arange(pop)[None, :]
    for r in (r1, r2, r3):
        assert ((r >= 0) & (r < pop) & (r != own)).all()
    assert ((r1 != r2) & (r1 != r3) & (r2 != r3)).all()
    # Every ordered triple of the 4 other members occurs (4*3*2 = 24 possibilities per member).
    triples = {(a, b, c) for a, b, c in zip(r1[:, 0], r2[:, 0], r3[:, 0])}
    assert len(triples) == 24


def test_initial_population_and_mutation_bounds():
    h, w = 9, 13
    u0 = uniforms(image_keys(0, np.arange(20)), 0, (200, 8))
    pop = initial_population(u0, h, w)
    assert pop.shape == (20, 200, 5)
    assert pop[..., 0].min() == 0 and pop[..., 0].max() == w - 1
    assert pop[..., 1].min() == 0 and pop[..., 1].max() == h - 1
    rgb = pop[..., 2:]
    assert rgb.min() == 0 and rgb.max() == 255
    assert abs(np.median(rgb) - 128) <= 6  # Normal(128, 127), clipped
    assert ((rgb == 0).mean() > 0.1) and ((rgb == 255).mean() > 0.1)  # ~16% clipped each side
    trial = mutate(pop, uniforms(image_keys(0, np.arange(20)), 1, (200, 5)), 0.5, h, w)
    assert trial.shape == pop.shape
    hi = np.array([w - 1, h - 1, 255, 255, 255])
    assert (trial >= 0).all() and (trial <= hi).all()
    # Members only on the left and right columns: r1 + F (r2 - r3) often leaves the image; those
    # coordinates are drawn again inside it rather than clipped onto the border.
    edge = pop.copy()
    edge[..., 0] = np.where(np.arange(200) % 2, w - 1, 0)
    trial = mutate(edge, uniforms(image_keys(0, np.arange(20)), 1, (200, 5)), 0.5, h, w)
    inside = (trial[..., 0] > 0) & (trial[..., 0] < w - 1)
    assert inside.mean() > 0.2 and (trial[..., 0] >= 0).all() and (trial[..., 0] <= w - 1).all()
