"""The ranked strategy: the input gradient ranks every pixel by the first-order effect on log
p(label) of its best RGB-cube corner (the seeded strategy's corner scores), the ``top_pixels`` are
evaluated exactly with that corner, and a local search then evaluates every corner at the pixels
around each image's best candidate until it stops improving. Deterministic: it draws no random
numbers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pasm.search.candidates import NDIM, Best, R, X, Y, check_inputs, result_arrays, start
from pasm.search.params import SearchParams, check_strategy
from pasm.search.seeded import CORNERS, gradient_seeds


def top_pixel_seeds(scores: torch.Tensor, k: int) -> np.ndarray:
    """(B, k', 5) int16 candidates of the k' = min(k, H W) pixels whose best RGB-cube corner has the
    lowest of the (B, H, W, 8) first-order ``scores`` (corner_scores), each with that corner, lowest
    first."""
    n, height, width, n_corners = scores.shape
    k = min(int(k), height * width)
    lowest, corner = scores.reshape(n, height * width, n_corners).min(dim=2)
    pixel = torch.topk(lowest, k, dim=1, largest=False, sorted=True).indices
    corner = corner.gather(1, pixel).cpu().numpy()
    cand = np.empty((n, k, NDIM), dtype=np.int16)
    cand[..., Y], cand[..., X] = np.divmod(pixel.cpu().numpy(), width)
    cand[..., R:] = CORNERS[corner]
    return cand


def neighbourhood(best: np.ndarray, radius: int, height: int, width: int) -> np.ndarray:
    """(N, (2 radius + 1)^2 x 8, 5) int16 candidates around each of the (N, 5) ``best``: every
    RGB-cube corner at every pixel within ``radius`` (Chebyshev) of its pixel. Offsets that leave the
    image are clipped to its border, so near a border (and at the best candidate itself) a candidate
    can repeat one already evaluated: a few spent queries, never a wrong result."""
    offsets = np.arange(-radius, radius + 1)
    dy, dx = (a.reshape(-1) for a in np.meshgrid(offsets, offsets, indexing="ij"))
    n, n_pix, n_col = len(best), len(dx), len(CORNERS)
    cand = np.empty((n, n_pix, n_col, NDIM), dtype=np.int16)
    cand[..., X] = np.clip(best[:, None, None, X] + dx[None, :, None], 0, width - 1)
    cand[..., Y] = np.clip(best[:, None, None, Y] + dy[None, :, None], 0, height - 1)
    cand[..., R:] = CORNERS[None, None]
    return cand.reshape(n, n_pix * n_col, NDIM)


def ranked_search(
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
    """One-pixel attack by first-order ranking and local search; same inputs and outputs as
    find_points (whatever ``params.strategy`` says).

    Per image: one forward+backward gives the gradient of log p(label), whose first-order prediction
    ranks the H W pixels by their best RGB-cube corner; the ``top_pixels`` best pixels are evaluated with
    that corner (distinct pixels: the local rounds try the other corners). Then, up to
    ``local_rounds`` times, every corner at every pixel within ``local_radius`` of the best candidate
    is evaluated ((2 radius + 1)^2 x 8 candidates); an image stops when a round does not lower
    its best probability, and, when its clean prediction is correct, as soon as its best flips the
    prediction (like find_points). ``queries`` counts the clean forward, the gradient pass as one
    query and every candidate evaluated. ``indices`` are accepted for the common signature; with no
    random draws, a shard reproduces the full run's rows whatever its indices.
    """
    check_strategy(params.strategy)
    images, labels, indices = check_inputs(images, labels, indices, params)
    n, height, width, _ = images.shape
    top_k, rounds, radius = int(params.top_pixels), int(params.local_rounds), int(params.local_radius)
    if top_k < 1:
        raise ValueError(f"top_pixels must be >= 1, got {top_k}")
    if rounds < 0 or radius < 0:
        raise ValueError(f"local_rounds and local_radius must be >= 0, got {rounds} and {radius}")

    device = torch.device(device)
    best = Best.empty(n)
    prob, prob_before, clean_correct = start(model, images, labels, mean, std, params, device, prepared)
    everyone = np.arange(n)
    seeds = gradient_seeds(prob, top_k, top_pixel_seeds)
    best.queries += 2  # the clean forward and the gradient forward+backward
    with torch.inference_mode():
        n_seeds = seeds.shape[1]
        p, f = prob.evaluate(np.repeat(everyone, n_seeds), seeds.reshape(-1, NDIM))
        best.queries += n_seeds
        best.update(everyone, seeds, p.reshape(n, n_seeds), f.reshape(n, n_seeds), clean_correct)
        active = everyone[~(clean_correct & best.flip)]
        for _ in range(rounds):
            if not len(active):
                break
            before = best.prob[active].copy()
            cand = neighbourhood(best.cand[active], radius, height, width)
            m = cand.shape[1]
            p, f = prob.evaluate(np.repeat(active, m), cand.reshape(-1, NDIM))
            best.queries[active] += m
            best.update(active, cand, p.reshape(-1, m), f.reshape(-1, m), clean_correct[active])
            improved = best.prob[active] < before
            active = active[improved & ~(clean_correct[active] & best.flip[active])]
    return result_arrays(best, prob_before, clean_correct)
