"""Tests of the point-search strategies: "seeded" (gradient seeds + short DE) and the "de" dispatch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from search_cases import MEAN, STD, assert_same, normalise, random_cnn_case

from pasm.search import SearchParams, default_batch_size, find_points
from pasm.search.seeded import CORNERS, best_members, corner_scores, seeded_search, top_seeds

PX, PY = 9, 4  # the planted sensitive pixel (column, row)
SIZE = 14


class GreenOverRedModel(torch.nn.Module):
    """3-class model driven by green minus red: a weighted sum of (g - r) peaks at (PX, PY)
    (weight 1; <= 0.45 elsewhere). Class 1 wins above 0.6, so on images with r == g everywhere only
    a pixel at (PX, PY) with red low and green high (an RGB-cube corner, not just one bright
    channel) flips class 0."""

    def __init__(self, size: int = SIZE) -> None:
        super().__init__()
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        w = 0.5 * torch.exp(-((xx - PX) ** 2 + (yy - PY) ** 2).float() / 8.0)
        w[PY, PX] = 1.0
        self.register_buffer("w", w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = x[:, 0] * STD[0] + MEAN[0]
        green = x[:, 1] * STD[1] + MEAN[1]
        s = ((green - red) * self.w).sum(dim=(1, 2))
        return torch.stack([20 * (0.6 - s), 20 * (s - 0.6), torch.full_like(s, -10.0)], dim=1)


def planted_images(n: int, seed: int = 0) -> np.ndarray:
    """Random images with red == green at every pixel (so class 0 cleanly), random blue."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)
    img[..., 1] = img[..., 0]
    return img


def seeded(model, images, labels, indices=None, **kw):
    params = SearchParams(
        **{
            "strategy": "seeded",
            "refine_population": 20,
            "top_k": 8,
            "refine_generations": 3,
            "batch_size": 50,
            **kw,
        }
    )
    return find_points(
        model, images, labels, mean=MEAN, std=STD, params=params, progress=False, indices=indices
    )


# --------------------------------------------------------------------------- seeded behaviour


def test_seeded_finds_planted_pixel_with_corner_colour():
    images = planted_images(10)
    labels = np.zeros(10, dtype=np.int64)
    out = seeded(GreenOverRedModel(), images, labels, top_k=3)
    assert out["clean_correct"].all() and out["flipped"].all()
    np.testing.assert_array_equal(out["x"], PX)
    np.testing.assert_array_equal(out["y"], PY)
    np.testing.assert_array_equal(out["rgb"][:, :2], [[0, 255]] * 10)  # red off, green on
    # Flipped by a seed: no refinement, queries = clean + gradient pass + 3 seeds.
    np.testing.assert_array_equal(out["queries"], 2 + 3)


def test_seeded_is_deterministic_and_seed_dependent():
    model, images, labels = random_cnn_case()
    a = seeded(model, images, labels, seed=3)
    assert_same(a, seeded(model, images, labels, seed=3))
    c = seeded(model, images, labels, seed=4)
    assert any((a[k] != c[k]).any() for k in ("x", "y", "rgb", "queries", "prob_after"))


def test_seeded_shard_reproduces_full_run():
    model, images, labels = random_cnn_case()
    full = seeded(model, images, labels)
    part = seeded(model, images[10:25], labels[10:25], indices=np.arange(10, 25))
    assert_same(part, {k: v[10:25] for k, v in full.items()})


def test_seeded_independent_of_batch_size():
    model, images, labels = random_cnn_case()
    a = seeded(model, images, labels, batch_size=7)
    b = seeded(model, images, labels, batch_size=0)  # auto: default_batch_size("cpu")
    for k in ("x", "y", "rgb", "flipped", "queries", "clean_correct"):
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    np.testing.assert_allclose(a["prob_after"], b["prob_after"], atol=1e-6)


@pytest.mark.parametrize("case", ["planted", "cnn"])
def test_seeded_reported_pixel_reproduces_prob_after(case):
    if case == "planted":
        model, images, labels = GreenOverRedModel(), planted_images(8), np.zeros(8, dtype=np.int64)
    else:
        model, images, labels = random_cnn_case()
    out = seeded(model, images, labels)
    n = len(images)
    pert = images.copy()
    pert[np.arange(n), out["y"], out["x"]] = out["rgb"]
    with torch.no_grad():
        probs = model(normalise(pert)).softmax(1).numpy()
        clean = model(normalise(images)).softmax(1).numpy()
    np.testing.assert_allclose(out["prob_after"], probs[np.arange(n), labels], atol=1e-5)
    np.testing.assert_allclose(out["prob_before"], clean[np.arange(n), labels], atol=1e-5)
    np.testing.assert_array_equal(out["flipped"], probs.argmax(1) != labels)
    np.testing.assert_array_equal(out["clean_correct"], clean.argmax(1) == labels)


@pytest.mark.parametrize("top_k,population", [(5, 20), (30, 12)])  # seeds fewer / more than population
def test_seeded_query_accounting(top_k, population):
    model, images, labels = random_cnn_case()
    gens = 3
    out = seeded(model, images, labels, top_k=top_k, refine_population=population, refine_generations=gens)
    seeds = top_k
    start = 2 + max(seeds, population)  # clean + gradient pass + seeds (+ random top-up)
    q = out["queries"]
    stopped = q == 2 + seeds  # flipped by a seed: never refined
    assert stopped.any() and (out["flipped"][stopped] & out["clean_correct"][stopped]).all()
    refined = q[~stopped]
    assert ((refined - start) % population == 0).all()
    assert (refined >= start).all() and (refined <= start + population * gens).all()
    # Images misclassified on the clean input cannot stop early: they run every generation.
    np.testing.assert_array_equal(q[~out["clean_correct"]], start + population * gens)
    assert (q <= 2 + seeds + max(population - seeds, 0) + population * gens).all()


def test_seeded_without_refinement_only_evaluates_seeds():
    model, images, labels = random_cnn_case()
    out = seeded(model, images, labels, top_k=4, refine_generations=0, refine_population=3)
    np.testing.assert_array_equal(out["queries"], 2 + 4)
    corners = {0, 255}
    assert all(set(row) <= corners for row in out["rgb"].tolist())


def test_seeded_input_untouched_mode_restored_and_empty():
    model, images, labels = random_cnn_case(n=6)
    images.setflags(write=False)
    model.train()
    out = seeded(model, images, labels)
    assert model.training and len(out["x"]) == 6
    empty = seeded(model, images[:0], labels[:0])
    assert all(len(v) == 0 for v in empty.values())


def test_seeded_invalid_settings():
    model, images, labels = random_cnn_case(n=4)
    for kw in ({"top_k": 0}, {"refine_generations": -1}, {"refine_population": 3}, {"batch_size": -1}):
        with pytest.raises(ValueError):
            seeded(model, images, labels, **kw)


# --------------------------------------------------------------------------- dispatch


def test_de_strategy_unchanged_and_dispatch():
    model, images, labels = random_cnn_case()
    kw = {"population": 12, "generations": 4, "batch_size": 50, "seed": 2}

    def run(p: SearchParams):
        return find_points(model, images, labels, mean=MEAN, std=STD, params=p, progress=False)

    assert_same(run(SearchParams(**kw)), run(SearchParams(**kw, strategy="de")))
    # Seeding settings do not touch the DE strategy.
    assert_same(run(SearchParams(**kw)), run(SearchParams(**kw, top_k=3, refine_generations=7)))
    p = SearchParams(**kw, strategy="seeded")
    direct = seeded_search(model, images, labels, mean=MEAN, std=STD, params=p, progress=False)
    assert_same(run(p), direct)


def test_invalid_strategy_is_named():
    with pytest.raises(ValueError, match="'cmaes'"):
        SearchParams(strategy="cmaes")
    params = SearchParams()
    params.strategy = "random"  # settings are mutable: find_points checks again
    model, images, labels = random_cnn_case(n=2)
    with pytest.raises(ValueError, match="'random'"):
        find_points(model, images, labels, mean=MEAN, std=STD, params=params, progress=False)


def test_default_batch_size():
    assert default_batch_size("cpu") == 50
    assert default_batch_size(torch.device("cuda")) == 1024
    assert default_batch_size("cuda:1") == 1024


# --------------------------------------------------------------------------- building blocks


def test_corner_scores_match_a_hand_computation():
    rng = np.random.default_rng(0)
    grad = torch.from_numpy(rng.normal(size=(2, 3, 3, 4)).astype(np.float32))
    clean = torch.from_numpy(rng.integers(0, 256, (2, 3, 3, 4), dtype=np.uint8))
    std = torch.tensor(STD)
    got = corner_scores(grad, clean, std).numpy()
    assert got.shape == (2, 3, 4, 8)
    for b, y, x, k in [(0, 0, 0, 0), (1, 2, 3, 7), (0, 1, 2, 5), (1, 0, 1, 3)]:
        want = sum(
            float(grad[b, c, y, x]) * (float(CORNERS[k, c]) - float(clean[b, c, y, x])) / (255 * STD[c])
            for c in range(3)
        )
        assert got[b, y, x, k] == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_top_seeds_decode_pixel_and_corner_lowest_first():
    scores = torch.zeros(2, 3, 4, 8)
    scores[0, 2, 1, 6] = -5.0  # y=2, x=1, corner 6
    scores[0, 0, 3, 1] = -4.0  # y=0, x=3, corner 1
    scores[1, 1, 0, 0] = -1.0
    got = top_seeds(scores, 2)
    assert got.dtype == np.int16 and got.shape == (2, 2, 5)
    np.testing.assert_array_equal(got[0, 0], [1, 2, *CORNERS[6]])
    np.testing.assert_array_equal(got[0, 1], [3, 0, *CORNERS[1]])
    np.testing.assert_array_equal(got[1, 0], [0, 1, *CORNERS[0]])
    assert top_seeds(scores, 999).shape == (2, 3 * 4 * 8, 5)  # k is capped at 8 H W


def test_best_members_stable_lowest_first():
    cand = np.arange(16 * 5, dtype=np.int16).reshape(1, 16, 5)
    fit = np.array([[0.5, 0.1, 0.9, 0.1] + [1.0] * 12], dtype=np.float32)
    flip = fit < 0.2
    pop, f, fl = best_members(cand, fit, flip, 3)
    np.testing.assert_array_equal(f, fit[:, [1, 3, 0]])  # stable: member 1 before member 3
    np.testing.assert_array_equal(pop[0], cand[0, [1, 3, 0]])
    np.testing.assert_array_equal(fl, [[True, True, False]])


# --------------------------------------------------------------------------- ranked behaviour


class HiddenPixelModel(torch.nn.Module):
    """3-class model whose gradient on clean images points one pixel beside the sensitive one: a
    linear term in (g - r) at (PX + 1, PY), too weak to flip class 0 alone, and a ReLU gate at (PX, PY)
    that is flat on images with r == g (zero gradient there) and flips class 0 once g - r > 0.5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = x[:, 0] * STD[0] + MEAN[0]
        green = x[:, 1] * STD[1] + MEAN[1]
        diff = green - red
        s = 0.3 * diff[:, PY, PX + 1] + 4.0 * torch.relu(diff[:, PY, PX] - 0.5)
        return torch.stack([20 * (0.6 - s), 20 * (s - 0.6), torch.full_like(s, -10.0)], dim=1)


def ranked(model, images, labels, indices=None, **kw):
    params = SearchParams(
        **{
            "strategy": "ranked",
            "top_pixels": 8,
            "local_rounds": 2,
            "local_radius": 1,
            "batch_size": 50,
            **kw,
        }
    )
    return find_points(
        model, images, labels, mean=MEAN, std=STD, params=params, progress=False, indices=indices
    )


def test_ranked_finds_planted_pixel_with_corner_colour():
    images = planted_images(10)
    labels = np.zeros(10, dtype=np.int64)
    out = ranked(GreenOverRedModel(), images, labels, top_pixels=3)
    assert out["clean_correct"].all() and out["flipped"].all()
    np.testing.assert_array_equal(out["x"], PX)
    np.testing.assert_array_equal(out["y"], PY)
    np.testing.assert_array_equal(out["rgb"][:, :2], [[0, 255]] * 10)
    np.testing.assert_array_equal(out["queries"], 2 + 3)  # flipped by a seed: no local round


def test_ranked_local_search_finds_the_pixel_the_gradient_misses():
    images = planted_images(6)
    labels = np.zeros(6, dtype=np.int64)
    seeds_only = ranked(HiddenPixelModel(), images, labels, top_pixels=1, local_rounds=0)
    assert not seeds_only["flipped"].any()
    np.testing.assert_array_equal(seeds_only["x"], PX + 1)  # the gradient's choice
    out = ranked(HiddenPixelModel(), images, labels, top_pixels=1, local_rounds=1)
    assert out["flipped"].all()
    np.testing.assert_array_equal(out["x"], PX)
    np.testing.assert_array_equal(out["y"], PY)
    np.testing.assert_array_equal(out["queries"], 2 + 1 + 9 * 8)


def test_ranked_shard_reproduces_full_run_and_is_deterministic():
    model, images, labels = random_cnn_case()
    full = ranked(model, images, labels)
    assert_same(full, ranked(model, images, labels))
    part = ranked(model, images[10:25], labels[10:25], indices=np.arange(10, 25))
    assert_same(part, {k: v[10:25] for k, v in full.items()})


def test_ranked_reported_pixel_reproduces_prob_after_and_beats_its_seeds():
    model, images, labels = random_cnn_case()
    out = ranked(model, images, labels, top_pixels=2, local_rounds=3)
    n = len(images)
    pert = images.copy()
    pert[np.arange(n), out["y"], out["x"]] = out["rgb"]
    with torch.no_grad():
        probs = model(normalise(pert)).softmax(1).numpy()
    np.testing.assert_allclose(out["prob_after"], probs[np.arange(n), labels], atol=1e-5)
    np.testing.assert_array_equal(out["flipped"], probs.argmax(1) != labels)
    seeds = ranked(model, images, labels, top_pixels=2, local_rounds=0)
    assert (out["prob_after"] <= seeds["prob_after"]).all()
    assert (out["prob_after"] < seeds["prob_after"]).sum() >= 5  # 8 of 30; most flip on a seed


def test_ranked_query_accounting():
    model, images, labels = random_cnn_case()
    top_k, rounds, per_round = 4, 3, 9 * 8
    out = ranked(model, images, labels, top_pixels=top_k, local_rounds=rounds)
    q = out["queries"]
    assert ((q - 2 - top_k) % per_round == 0).all()
    assert (q <= 2 + top_k + rounds * per_round).all()
    stopped_by_seed = q == 2 + top_k
    assert (out["flipped"][stopped_by_seed] & out["clean_correct"][stopped_by_seed]).all()
    assert (q > 2 + top_k).any()


def test_ranked_invalid_settings_and_empty():
    model, images, labels = random_cnn_case(n=4)
    for kw in ({"top_pixels": 0}, {"local_rounds": -1}, {"local_radius": -1}):
        with pytest.raises(ValueError):
            ranked(model, images, labels, **kw)
    empty = ranked(model, images[:0], labels[:0])
    assert all(len(v) == 0 for v in empty.values())


def test_ranked_prefers_a_flip_to_a_lower_probability():
    from pasm.search.candidates import Best

    best = Best.empty(2)
    pop = np.arange(2 * 3 * 5, dtype=np.int16).reshape(2, 3, 5)
    fit = np.array([[0.30, 0.45, 0.40], [0.30, 0.45, 0.40]], dtype=np.float32)
    flip = np.array([[False, True, False], [False, True, False]])
    # image 0 is right on the clean input: its flip wins; image 1 is wrong already: "flips" do not count
    best.update(np.arange(2), pop, fit, flip, np.array([True, False]))
    np.testing.assert_array_equal(best.cand, [pop[0, 1], pop[1, 0]])
    np.testing.assert_array_equal(best.flip, [True, False])
    # a later, lower probability without a flip does not replace image 0's flip
    best.update(
        np.arange(1), pop[:1, :1], np.array([[0.1]], np.float32), np.array([[False]]), np.array([True])
    )
    np.testing.assert_array_equal(best.cand[0], pop[0, 1])
