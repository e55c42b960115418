"""The ranked strategy: the input gradient ranks every pixel by the first-order effect on log
p(label) of its best RGB-cube corner (the seeded strategy's corner scores), the ``top_pixels`` are
evaluated exactly with that corner, and a local search then evaluates every corner at the pixels
around each image's best candidate until it stops improving. Deterministic: it draws no random
numbers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pasm.nn.inference import inference_model
from pasm.search.candidates import (
    NDIM,
    Best,
    Problem,
    R,
    X,
    Y,
    build_perturbed,
    check_inputs,
    make_problem,
    result_arrays,
)
from pasm.search.params import SearchParams, check_strategy
from pasm.search.seeded import CORNERS, corner_scores, input_gradient


def pixel_seeds(prob: Problem, k: int) -> np.ndarray:
    """(N, k', 5) int16 candidates of every image: the k' = min(k, H W) pixels whose best RGB-cube
    corner has the lowest first-order score (corner_scores), each with that corner, lowest first;
    one forward+backward per image, in chunks of the batch size."""
    n = len(prob.clean)
    height, width = prob.clean.shape[2:]
    k = min(int(k), height * width)
    out = []
    for s in range(0, n, prob.batch_size):
        e = min(s + prob.batch_size, n)
        rows = torch.arange(s, e, device=prob.clean.device)
        with torch.no_grad():
            batch = build_perturbed(
                prob.clean, rows, torch.arange(e - s, device=rows.device), None, prob.mean, prob.std
            )
        scores = corner_scores(input_gradient(prob.model, batch, prob.labels[s:e]), prob.clean[s:e], prob.std)
        best, corner = scores.reshape(e - s, height * width, len(CORNERS)).min(dim=2)
        pixel = torch.topk(best, k, dim=1, largest=False, sorted=True).indices
        corner = corner.gather(1, pixel).cpu().numpy()
        cand = np.empty((e - s, k, NDIM), dtype=np.int16)
        cand[..., Y], cand[..., X] = np.divmod(pixel.cpu().numpy(), width)
        cand[..., R:] = CORNERS[corner]
        out.append(cand)
    return np.concatenate(out) if out else np.zeros((0, k, NDIM), np.int16)


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


def update_flip_first(
    best: Best, rows: np.ndarray, pop: np.ndarray, fit: np.ndarray, flip: np.ndarray, counts: np.ndarray
) -> None:
    """Fold an evaluated (len(rows), P) population into the best-so-far candidates, a candidate that
    flips the prediction (where ``counts``, per row: the clean prediction is correct) before any that
    does not, then the lower true-class probability."""
    real = flip & counts[:, None]
    score = fit - 2.0 * real  # probabilities are in [0, 1]: a real flip always ranks first
    j = score.argmin(axis=1)
    a = np.arange(len(rows))
    current = best.prob[rows] - 2.0 * (best.flip[rows] & counts)
    better = score[a, j] < current
    r, jj = rows[better], j[better]
    best.cand[r] = pop[better, jj]
    best.prob[r] = fit[better, jj]
    best.flip[r] = flip[better, jj]


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
    if not prepared:  # a caller that searches many blocks prepares it once
        model = inference_model(model, device, params.precision)
    with torch.no_grad():  # not inference mode: the gradient pass differentiates through these
        prob = make_problem(model, images, labels, mean, std, device, params.batch_size)
    everyone = np.arange(n)
    with torch.inference_mode():
        prob_before, wrong = prob.evaluate(everyone, None)
    clean_correct = ~wrong
    seeds = pixel_seeds(prob, top_k)
    best.queries += 2  # the clean forward and the gradient forward+backward
    with torch.inference_mode():
        n_seeds = seeds.shape[1]
        p, f = prob.evaluate(np.repeat(everyone, n_seeds), seeds.reshape(-1, NDIM))
        best.queries += n_seeds
        update_flip_first(best, everyone, seeds, p.reshape(n, n_seeds), f.reshape(n, n_seeds), clean_correct)
        active = everyone[~(clean_correct & best.flip)]
        for _ in range(rounds):
            if not len(active):
                break
            before = best.prob[active].copy()
            cand = neighbourhood(best.cand[active], radius, height, width)
            m = cand.shape[1]
            p, f = prob.evaluate(np.repeat(active, m), cand.reshape(-1, NDIM))
            best.queries[active] += m
            update_flip_first(best, active, cand, p.reshape(-1, m), f.reshape(-1, m), clean_correct[active])
            improved = best.prob[active] < before
            active = active[improved & ~(clean_correct[active] & best.flip[active])]
    return result_arrays(best, prob_before, clean_correct)
