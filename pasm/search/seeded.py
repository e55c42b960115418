"""The seeded strategy: the input gradient ranks every (pixel, RGB-cube corner) pair by its
first-order effect on log p(label), the ``top_k`` best are evaluated, and a short DE
(pasm.search.de) refines from the best of them. Far fewer queries than the full DE for the same
strength (benchmarks/point_search.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from pasm.search.candidates import (
    NDIM,
    Best,
    Problem,
    R,
    X,
    Y,
    build_perturbed,
    check_inputs,
    forward,
    result_arrays,
    start,
)
from pasm.search.de import INIT_DRAWS, evolve, initial_population
from pasm.search.params import SearchParams, check_strategy
from pasm.search.rng import image_keys, uniforms

SEEDED_STREAM = 1 << 20  # random-stream offset of the seeded strategy's refinement (apart from DE's)
# The 8 corners of the RGB cube, (8, 3) int16: bit 2 = red, bit 1 = green, bit 0 = blue.
CORNERS = (np.array([[(c >> 2) & 1, (c >> 1) & 1, c & 1] for c in range(8)]) * 255).astype(np.int16)


def input_gradient(model: torch.nn.Module, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) gradient of log p(label) with respect to the normalised input, from one
    forward+backward of the batch."""
    with torch.inference_mode(False), torch.enable_grad():
        x = batch.detach().clone().requires_grad_(True)  # clones are usable even if made in inference mode
        logp = forward(model, x).log_softmax(dim=1).gather(1, labels[:, None].clone()).sum()
        (grad,) = torch.autograd.grad(logp, x)
    return grad.float()


def corner_scores(grad: torch.Tensor, clean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 8) first-order change of log p(label) when pixel (x, y) of the uint8 (B, 3, H, W)
    ``clean`` images is set to each corner of the RGB cube: sum_c grad_c (v_c - clean_c) / (255 std_c).
    The most negative entries are the (pixel, colour) pairs most likely to flip the prediction."""
    g = grad / (255.0 * std.view(1, 3, 1, 1))
    corners = torch.as_tensor(CORNERS, dtype=g.dtype, device=g.device)  # (8, 3)
    at_corner = torch.einsum("bchw,kc->bhwk", g, corners)
    return at_corner - (g * clean.to(g.dtype)).sum(dim=1)[..., None]


def top_seeds(scores: torch.Tensor, k: int) -> np.ndarray:
    """(B, k', 5) int16 candidates (x, y, r, g, b) of the k' = min(k, 8 H W) lowest ``scores``
    (B, H, W, 8), lowest first."""
    n, height, width, n_corners = scores.shape
    k = min(int(k), height * width * n_corners)
    idx = torch.topk(scores.reshape(n, -1), k, dim=1, largest=False, sorted=True).indices.cpu().numpy()
    pixel, corner = np.divmod(idx, n_corners)
    cand = np.empty((n, k, NDIM), dtype=np.int16)
    cand[..., Y], cand[..., X] = np.divmod(pixel, width)
    cand[..., R:] = CORNERS[corner]
    return cand


def best_members(
    cand: np.ndarray, fit: np.ndarray, flip: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``size`` lowest-probability rows of each image's (N, M, ...) candidates, fitness and flip
    flags, best first (ties keep candidate order); the refinement's starting population."""
    order = np.argsort(fit, axis=1, kind="stable")[:, :size]

    def take(a: np.ndarray) -> np.ndarray:
        return np.take_along_axis(a, order.reshape(order.shape + (1,) * (a.ndim - 2)), axis=1)

    return take(cand), take(fit), take(flip)


def gradient_seeds(
    prob: Problem, k: int, pick: Callable[[torch.Tensor, int], np.ndarray] = top_seeds
) -> np.ndarray:
    """(N, k', 5) int16 first-order seeds of every image: ``pick`` (default top_seeds) applied to its
    corner_scores, one forward+backward per image in chunks of the batch size; only the chosen
    candidates are kept, never the score maps."""
    n = len(prob.clean)
    device = prob.clean.device
    out = []
    for s in range(0, n, prob.batch_size):
        e = min(s + prob.batch_size, n)
        rows = torch.arange(s, e, device=device)
        with torch.no_grad():
            batch = build_perturbed(
                prob.clean, rows, torch.arange(e - s, device=device), None, prob.mean, prob.std
            )
        grad = input_gradient(prob.model, batch, prob.labels[s:e])
        out.append(pick(corner_scores(grad, prob.clean[s:e], prob.std), k))
    if out:
        return np.concatenate(out)
    empty = torch.zeros((1, *prob.clean.shape[2:], len(CORNERS)), device=prob.clean.device)
    return pick(empty, k)[:0]


def seeded_search(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    params: SearchParams,
    device: str | torch.device = "cpu",
    progress: bool = True,
    indices: np.ndarray | None = None,
    prepared: bool = False,
) -> dict[str, np.ndarray]:
    """One-pixel attack seeded by the input gradient, refined by a short DE; same inputs and
    outputs as find_points (whatever ``params.strategy`` says).

    Per image: one forward+backward gives the gradient of log p(label); its first-order prediction
    (corner_scores) ranks all 8 H W (pixel, RGB-cube corner) pairs and the ``top_k`` best are
    evaluated. Unless the clean prediction is correct and a seed already flips it, DE/rand/1 (factor
    ``scale_f``, no crossover) then runs ``refine_generations`` generations from the best
    ``refine_population`` seeds (topped up with Su et al.'s random candidates when there are fewer
    seeds), stopping early on a flip like find_points. ``queries`` counts the clean forward, the
    gradient pass as one query, and every candidate evaluated: 2 + top_k, plus
    max(refine_population - top_k, 0) + refine_population * generations run when refined.
    Deterministic and shard-independent: the random draws are keyed by (seed, global index).
    """
    check_strategy(params.strategy)
    images, labels, indices = check_inputs(images, labels, indices, params)
    n, height, width, _ = images.shape
    pop_size, gens, top_k = int(params.refine_population), int(params.refine_generations), int(params.top_k)
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if gens < 0:
        raise ValueError(f"refine_generations must be >= 0, got {gens}")
    if gens and pop_size < 4:
        raise ValueError(
            "DE/rand/1 refinement needs refine_population >= 4 (three donors distinct from the member)"
        )

    device = torch.device(device)
    keys = image_keys(params.seed, indices)
    best = Best.empty(n)
    prob, prob_before, clean_correct = start(model, images, labels, mean, std, params, device, prepared)
    everyone = np.arange(n)
    seeds = gradient_seeds(prob, top_k)
    best.queries += 2  # the clean forward and the gradient forward+backward
    with torch.inference_mode():
        n_seeds = seeds.shape[1]
        p, f = prob.evaluate(np.repeat(everyone, n_seeds), seeds.reshape(-1, NDIM))
        fit, flip = p.reshape(n, n_seeds), f.reshape(n, n_seeds)
        best.queries += n_seeds
        best.update(everyone, seeds, fit, flip)
        if gens == 0:
            return result_arrays(best, prob_before, clean_correct)

        active = everyone[~(clean_correct & best.flip)]
        pop, fit, flip = best_members(seeds[active], fit[active], flip[active], pop_size)
        n_fill = pop_size - pop.shape[1]
        if n_fill > 0 and len(active):
            fill = initial_population(
                uniforms(keys[active], SEEDED_STREAM, (n_fill, INIT_DRAWS)), height, width
            )
            p, f = prob.evaluate(np.repeat(active, n_fill), fill.reshape(-1, NDIM))
            p, f = p.reshape(-1, n_fill), f.reshape(-1, n_fill)
            best.queries[active] += n_fill
            best.update(active, fill, p, f)
            pop = np.concatenate([pop, fill], axis=1)
            fit, flip = np.concatenate([fit, p], axis=1), np.concatenate([flip, f], axis=1)
        evolve(
            prob,
            keys,
            active,
            pop,
            fit,
            flip,
            clean_correct,
            best,
            gens=gens,
            scale_f=params.scale_f,
            stream=SEEDED_STREAM,
            progress=progress,
            desc="seeded point search",
        )
    return result_arrays(best, prob_before, clean_correct)
