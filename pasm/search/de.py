"""Differential evolution over one-pixel candidates: the attack of Su, Vargas and Sakurai,
"One pixel attack for fooling deep neural networks" (IEEE TEVC 2019), as PASM uses it (Sec. 3.2).

DE/rand/1 with scale F and no crossover over (x, y, r, g, b), non-targeted: it minimises the
softmax probability of the true class. Initial x, y are uniform over the image and r, g, b ~
N(128, 127) clipped to [0, 255]; a trial coordinate that leaves the image is drawn again
uniformly (as scipy's DE does). An image whose clean prediction is correct stops as soon as its
best-so-far candidate flips the prediction; an image misclassified already runs the whole budget
``population * (generations + 1)`` (plus the clean query). All draws come from pasm.search.rng.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from pasm.nn.inference import inference_model
from pasm.search.candidates import NDIM, Best, Problem, R, X, Y, check_inputs, make_problem, result_arrays
from pasm.search.params import SearchParams
from pasm.search.rng import image_keys, uniform_int, uniforms

INIT_DRAWS = 8  # x, y, and three Box-Muller pairs for r, g, b
STEP_DRAWS = 5  # offsets picking the three distinct donors r1, r2, r3; redraws of x and y


def initial_population(u: np.ndarray, height: int, width: int) -> np.ndarray:
    """Su et al.'s initial candidates from (A, P, 8) uniforms: x, y uniform over the image,
    rgb ~ Normal(128, 127) clipped to [0, 255]; returns int16 (A, P, 5)."""
    pop = np.empty(u.shape[:2] + (NDIM,), dtype=np.int16)
    pop[..., X] = uniform_int(u[..., 0], width)
    pop[..., Y] = uniform_int(u[..., 1], height)
    u1, u2 = u[..., 2:8:2], u[..., 3:8:2]  # Box-Muller pairs, one per channel
    z = np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)
    pop[..., R:] = np.rint(np.clip(128.0 + 127.0 * z, 0.0, 255.0))
    return pop


def _donors(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three distinct member indices per member, all different from the member itself, from
    (A, P, 3) uniforms (uniform over such triples)."""
    p = u.shape[1]
    a = uniform_int(u[..., 0], p - 1)
    b = uniform_int(u[..., 1], p - 2)
    c = uniform_int(u[..., 2], p - 3)
    b += b >= a
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    c += c >= lo
    c += c >= hi
    own = np.arange(p)[None, :]
    return tuple((own + 1 + off) % p for off in (a, b, c))  # offsets in [0, p-2] never hit own


def mutate(pop: np.ndarray, u: np.ndarray, scale_f: float, height: int, width: int) -> np.ndarray:
    """DE/rand/1 trials without crossover: c_r1 + F * (c_r2 - c_r3), rounded; pop int (A, P, 5),
    u (A, P, 5) uniforms; returns int16 (A, P, 5).

    A coordinate that leaves the image is drawn again uniformly (u[..., 3:5]), as scipy's DE does;
    clipping would pile those trials onto the border rows and columns, the least sensitive pixels
    of an aligned face. RGB values are clipped to [0, 255] (the extremes are valid, strong colours).
    """
    r1, r2, r3 = _donors(u)
    c = pop.astype(np.float32)  # values <= 2**15 are exact; float32 halves the temporaries
    take = lambda r: np.take_along_axis(c, r[..., None], axis=1)  # noqa: E731
    trial = take(r1) + np.float32(scale_f) * (take(r2) - take(r3))
    trial = np.rint(trial)
    for dim, size in ((X, width), (Y, height)):
        out = (trial[..., dim] < 0) | (trial[..., dim] > size - 1)
        trial[..., dim][out] = uniform_int(u[..., 3 + dim][out], size)
    trial[..., R:] = np.clip(trial[..., R:], 0, 255)
    return trial.astype(np.int16)


def _select(
    pop: np.ndarray,
    fit: np.ndarray,
    flip: np.ndarray,
    trial: np.ndarray,
    p_trial: np.ndarray,
    f_trial: np.ndarray,
) -> None:
    """DE selection in place: a trial replaces its parent when its true-class probability is lower."""
    better = p_trial < fit
    pop[better] = trial[better]
    fit[better] = p_trial[better]
    flip[better] = f_trial[better]


def evolve(
    prob: Problem,
    keys: np.ndarray,
    active: np.ndarray,
    pop: np.ndarray,
    fit: np.ndarray,
    flip: np.ndarray,
    clean_correct: np.ndarray,
    best: Best,
    *,
    gens: int,
    scale_f: float,
    stream: int,
    progress: bool,
    desc: str,
) -> None:
    """DE/rand/1 generations 1..gens on (len(active), P, 5) populations, in place on ``best``.
    Before each generation, images with a correct clean prediction and a flipping best candidate
    stop; generation g draws random stream ``stream + g`` of each image's key."""
    pop_size = pop.shape[1]
    height, width = prob.clean.shape[2:]
    bar = tqdm(total=gens, desc=desc, unit="gen", disable=not progress)
    try:
        for gen in range(1, gens + 1):
            keep = ~(clean_correct[active] & best.flip[active])
            active, pop, fit, flip = active[keep], pop[keep], fit[keep], flip[keep]
            bar.set_postfix(active=len(active))
            if len(active) == 0:
                break
            u = uniforms(keys[active], stream + gen, (pop_size, STEP_DRAWS))
            trial = mutate(pop, u, scale_f, height, width)
            p, f = prob.evaluate(np.repeat(active, pop_size), trial.reshape(-1, NDIM))
            best.queries[active] += pop_size
            _select(pop, fit, flip, trial, p.reshape(-1, pop_size), f.reshape(-1, pop_size))
            best.update(active, pop, fit, flip)
            bar.update(1)
    finally:
        bar.close()


def de_search(
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
    """Su et al.'s non-targeted one-pixel DE (``population`` x ``generations``) on every image.

    images: uint8 (N, H, W, 3); labels: int (N,); the model (already on ``device``) maps the
    normalised float (B, 3, H, W) batch to logits. ``indices`` are the images' global indices
    (default arange(N)) and key the randomness, so shards reproduce the full run; ``prepared`` as in
    find_points. Returns arrays of length N: x, y (int32), rgb (uint8, N x 3), prob_before,
    prob_after (float32), flipped, queries (int32, forwards spent incl. the clean one), clean_correct.
    """
    images, labels, indices = check_inputs(images, labels, indices, params)
    n, height, width, _ = images.shape
    pop_size, gens = int(params.population), int(params.generations)
    if pop_size < 4:
        raise ValueError("DE/rand/1 needs population >= 4 (three donors distinct from the member)")
    if gens < 0:
        raise ValueError("generations must be >= 0")

    device = torch.device(device)
    keys = image_keys(params.seed, indices)
    best = Best.empty(n)
    if not prepared:  # a caller that searches many blocks prepares it once
        model = inference_model(model, device, params.precision)
    with torch.inference_mode():
        prob = make_problem(model, images, labels, mean, std, device, params.batch_size)
        everyone = np.arange(n)
        prob_before, wrong = prob.evaluate(everyone, None)
        clean_correct = ~wrong
        best.queries += 1

        # Generation 0: Su et al.'s random initial population.
        pop = initial_population(uniforms(keys, 0, (pop_size, INIT_DRAWS)), height, width)
        p, f = prob.evaluate(np.repeat(everyone, pop_size), pop.reshape(-1, NDIM))
        fit, flip = p.reshape(n, pop_size), f.reshape(n, pop_size)
        best.queries += pop_size
        best.update(everyone, pop, fit, flip)
        evolve(
            prob,
            keys,
            everyone,
            pop,
            fit,
            flip,
            clean_correct,
            best,
            gens=gens,
            scale_f=params.scale_f,
            stream=0,
            progress=progress,
            desc="point search",
        )
    return result_arrays(best, prob_before, clean_correct)
