"""Batched one-pixel adversarial point search (Su et al.'s differential evolution, or seeded).

PASM needs, every round, the most attack-sensitive pixel of every training image. This module
finds it with the one-pixel attack of Su et al. ("One pixel attack for fooling deep neural
networks"): differential evolution (DE/rand/1, no crossover) over candidates (x, y, r, g, b),
minimising the softmax probability of the true class. Populations of many images are evaluated
together in forward passes of ``batch_size`` perturbed images built by indexed writes on the
device.

Two strategies (``SearchParams.strategy``):

* ``"de"``: Su et al.'s attack, ``population`` random candidates evolved for ``generations``.
* ``"seeded"``: one forward+backward per image gives the input gradient of log p(label); its
  first-order prediction ranks every (pixel, RGB-cube corner) pair, the ``top_k`` best are tried,
  and a short DE (``refine_generations`` x ``refine_population``) refines from the best of them.
  Far fewer queries than "de" for the same strength (benchmarks/point_search.py).

Forwards run on a copy of the model with convolution+batch-norm pairs folded and channels_last
batches (pasm.inference); on CUDA in bfloat16 autocast (probabilities still computed in float32),
on CPU in float32.

Semantics worth knowing:

* An image whose clean prediction is correct stops as soon as its best-so-far candidate flips the
  prediction (argmax != label); it is then removed from later forward passes.
* An image already misclassified on the clean input cannot "flip"; it runs the full budget
  ``population * (generations + 1)`` (plus the clean query) minimising the true-class probability.
  Its ``flipped`` output is still "argmax of the perturbed image != label" (usually True), so
  combine it with ``clean_correct`` when a real flip is meant.
* All randomness is counter-based: uniform numbers are hashed (splitmix64) from
  (seed, global image index, generation, member, dimension). The points found for image i
  therefore do not depend on which other images share the call, on ``batch_size`` or on early
  stops of other images; a shard ``images[a:b]`` with ``indices=arange(a, b)`` reproduces the full
  run's rows a:b (bit-exactly when the model's per-row outputs do not depend on the batch they
  are computed in).
* ``prob_after`` is the lowest true-class probability among evaluated candidates; it is below
  ``prob_before`` unless no candidate pixel lowers it (it is not clamped to the clean value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from pasm.inference import inference_model

__all__ = ["SearchParams", "STRATEGIES", "search_points", "seeded_search", "default_batch_size",
           "build_perturbed", "evaluate_candidates", "initial_population", "mutate", "uniforms",
           "image_keys", "input_gradient", "corner_scores", "top_seeds", "best_members"]

STRATEGIES = ("de", "seeded")

# Candidate layout: columns of a (..., 5) integer array.
X, Y, R, G, B = range(5)
_NDIM = 5
_INIT_DRAWS = 8  # x, y, and three Box-Muller pairs for r, g, b
_STEP_DRAWS = 5  # offsets picking the three distinct donors r1, r2, r3; redraws of x and y

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_KEY_BLOCK = 2048  # images per block when hashing random numbers (bounds temporary memory)
_SEEDED_STREAM = 1 << 20  # random-stream offset of the seeded strategy's refinement (apart from DE's)
# The 8 corners of the RGB cube, (8, 3) int16: bit 2 = red, bit 1 = green, bit 0 = blue.
_CORNERS = (np.array([[(c >> 2) & 1, (c >> 1) & 1, c & 1] for c in range(8)]) * 255).astype(np.int16)


@dataclass
class SearchParams:
    """Settings of the one-pixel point search (strategy, DE and seeding sizes)."""

    population: int = 400      # Su et al.'s default
    generations: int = 100
    scale_f: float = 0.5       # DE mutation factor F
    batch_size: int = 50       # perturbed images per forward pass; 0 = default_batch_size(device)
    seed: int = 0
    strategy: str = "de"       # "de" (Su et al.) or "seeded" (gradient seeds + short DE)
    top_k: int = 40            # seeded: best first-order (pixel, RGB corner) seeds tried per image
    refine_generations: int = 2  # seeded: DE generations after seeding (0: seeding only)
    refine_population: int = 20  # seeded: DE population of the refinement

    def __post_init__(self) -> None:
        """Reject an unknown strategy when the settings are built, before any model is loaded."""
        _check_strategy(self.strategy)


def _check_strategy(name: str) -> None:
    """ValueError naming ``name`` unless it is one of STRATEGIES."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown point-search strategy {name!r}; expected one of {STRATEGIES}")


def default_batch_size(device: str | torch.device) -> int:
    """Forward batch used when ``batch_size`` is 0: 50 on CPU (fastest measured for a compact CNN:
    1065, 3211, 3664, 1769, 1447 images/s at 1, 10, 50, 128, 512), 1024 on CUDA (keeps it busy)."""
    return 1024 if torch.device(device).type == "cuda" else 50


# --------------------------------------------------------------------------- counter-based randomness


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser applied elementwise, in place, to a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= _MIX1
        z ^= z >> np.uint64(27)
        z *= _MIX2
        z ^= z >> np.uint64(31)
    return z


def image_keys(seed: int, indices: np.ndarray) -> np.ndarray:
    """One 64-bit random key per image from (seed, global image index); keys seed all its draws."""
    s = _mix64(np.array([int(seed) % 2**64], dtype=np.uint64))
    idx = np.asarray(indices).astype(np.uint64)
    with np.errstate(over="ignore"):
        return _mix64(s ^ _mix64(idx * _GAMMA + _GAMMA))


def uniforms(keys: np.ndarray, step: int, shape: tuple[int, ...]) -> np.ndarray:
    """U[0, 1) float64 draws of shape (len(keys), *shape) for stream ``step``, a pure function of
    (key, step, position), so each image's numbers ignore which other images are present."""
    n = int(np.prod(shape))
    out = np.empty((len(keys), n), dtype=np.float64)
    with np.errstate(over="ignore"):
        step_key = _mix64(np.array([step + 1], dtype=np.uint64) * _GAMMA)
        ctr = np.arange(1, n + 1, dtype=np.uint64) * _GAMMA
        for s in range(0, len(keys), _KEY_BLOCK):
            k = _mix64(keys[s:s + _KEY_BLOCK] ^ step_key)
            h = _mix64(k[:, None] + ctr[None, :])
            out[s:s + _KEY_BLOCK] = (h >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return out.reshape(len(keys), *shape)


def _uniform_int(u: np.ndarray, n: int) -> np.ndarray:
    """Map U[0, 1) draws to integers in [0, n)."""
    return np.minimum(np.floor(u * n).astype(np.int64), n - 1)


# --------------------------------------------------------------------------- differential evolution


def initial_population(u: np.ndarray, height: int, width: int) -> np.ndarray:
    """Su et al.'s initial candidates from (A, P, 8) uniforms: x, y uniform over the image,
    rgb ~ Normal(128, 127) clipped to [0, 255]; returns int16 (A, P, 5)."""
    pop = np.empty(u.shape[:2] + (_NDIM,), dtype=np.int16)
    pop[..., X] = _uniform_int(u[..., 0], width)
    pop[..., Y] = _uniform_int(u[..., 1], height)
    u1, u2 = u[..., 2:8:2], u[..., 3:8:2]  # Box-Muller pairs, one per channel
    z = np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)
    pop[..., R:] = np.rint(np.clip(128.0 + 127.0 * z, 0.0, 255.0))
    return pop


def _donors(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three distinct member indices per member, all different from the member itself, from
    (A, P, 3) uniforms (uniform over such triples)."""
    p = u.shape[1]
    a = _uniform_int(u[..., 0], p - 1)
    b = _uniform_int(u[..., 1], p - 2)
    c = _uniform_int(u[..., 2], p - 3)
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
        trial[..., dim][out] = _uniform_int(u[..., 3 + dim][out], size)
    trial[..., R:] = np.clip(trial[..., R:], 0, 255)
    return trial.astype(np.int16)


# --------------------------------------------------------------------------- batched evaluation


def _normalise(u8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 values -> (v/255 - mean) / std, float32; channel axis must broadcast with mean."""
    return (u8.float() / 255.0 - mean) / std


def build_perturbed(clean: torch.Tensor, uniq_idx: torch.Tensor, row_idx: torch.Tensor,
                    cand: torch.Tensor | None, mean: torch.Tensor,
                    std: torch.Tensor) -> torch.Tensor:
    """Normalised (B, 3, H, W) batch whose row k is clean image ``clean[uniq_idx[row_idx[k]]]``
    (uint8 N,3,H,W) with pixel (x, y) set to rgb from ``cand[k]`` (B, 5 int64; None: clean).
    Each distinct image is normalised once, replicated by a gather, then all pixels are written
    with one indexed assignment."""
    norm = _normalise(clean.index_select(0, uniq_idx), mean.view(3, 1, 1), std.view(3, 1, 1))
    batch = norm.index_select(0, row_idx)
    if cand is not None:
        rows = torch.arange(len(cand), device=batch.device)
        batch[rows, :, cand[:, Y], cand[:, X]] = _normalise(cand[:, R:], mean, std)
    return batch


def _chunk_plan(img_idx: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split rows into forward chunks of ``batch_size``; within each chunk, consecutive rows of the
    same image share one normalised copy. Returns (run_images, run_of_row, local_run_of_row)."""
    n = len(img_idx)
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = img_idx[1:] != img_idx[:-1]
    new_run[::batch_size] = True  # runs never straddle chunks
    run_of_row = np.cumsum(new_run) - 1
    chunk_first_run = run_of_row[::batch_size]
    local = run_of_row - np.repeat(chunk_first_run, batch_size)[:n]
    return img_idx[new_run], run_of_row, local


def _forward(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Float32 logits of a channels_last batch (see pasm.inference.inference_model); on CUDA
    through a bfloat16 autocast forward (tensor cores), on CPU in float32."""
    batch = batch.contiguous(memory_format=torch.channels_last)
    if batch.device.type != "cuda":
        return model(batch).float()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(batch)
    return logits.float()


def _true_prob(model: torch.nn.Module, batch: torch.Tensor,
               labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """True-class softmax probability and "prediction != label" for one forward pass."""
    logits = _forward(model, batch)
    prob = logits.softmax(dim=1).gather(1, labels[:, None])[:, 0]
    return prob, logits.argmax(dim=1) != labels


def evaluate_candidates(model: torch.nn.Module, clean: torch.Tensor, labels: torch.Tensor,
                        img_idx: np.ndarray, cand: np.ndarray | None, mean: torch.Tensor,
                        std: torch.Tensor, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """True-class probabilities (float32) and flip flags (bool) of rows (img_idx[k], cand[k]),
    in forward chunks of ``batch_size`` rows; ``cand=None`` evaluates the clean images."""
    img_idx = np.ascontiguousarray(img_idx, dtype=np.int64)
    if len(img_idx) == 0:
        return np.zeros(0, np.float32), np.zeros(0, bool)
    device = clean.device
    run_images, run_of_row, local = _chunk_plan(img_idx, batch_size)
    to_dev = lambda a: torch.from_numpy(a.astype(np.int64)).to(device)  # noqa: E731
    run_images_t, local_t, labels_t = to_dev(run_images), to_dev(local), labels[to_dev(img_idx)]
    cand_t = None if cand is None else to_dev(cand)
    probs, flips = [], []
    for s in range(0, len(img_idx), batch_size):
        e = min(s + batch_size, len(img_idx))
        uniq = run_images_t[int(run_of_row[s]):int(run_of_row[e - 1]) + 1]
        batch = build_perturbed(clean, uniq, local_t[s:e], None if cand_t is None else cand_t[s:e],
                                mean, std)
        p, f = _true_prob(model, batch, labels_t[s:e])
        probs.append(p)
        flips.append(f)
    return torch.cat(probs).cpu().numpy(), torch.cat(flips).cpu().numpy()


# --------------------------------------------------------------------------- seeded strategy: seeds


def input_gradient(model: torch.nn.Module, batch: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) gradient of log p(label) with respect to the normalised input, from one
    forward+backward of the batch."""
    with torch.inference_mode(False), torch.enable_grad():
        x = batch.detach().clone().requires_grad_(True)  # clones are usable even if made in inference mode
        logp = _forward(model, x).log_softmax(dim=1).gather(1, labels[:, None].clone()).sum()
        (grad,) = torch.autograd.grad(logp, x)
    return grad.float()


def corner_scores(grad: torch.Tensor, clean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 8) first-order change of log p(label) when pixel (x, y) of the uint8 (B, 3, H, W)
    ``clean`` images is set to each corner of the RGB cube: sum_c grad_c (v_c - clean_c) / (255 std_c).
    The most negative entries are the (pixel, colour) pairs most likely to flip the prediction."""
    g = grad / (255.0 * std.view(1, 3, 1, 1))
    corners = torch.as_tensor(_CORNERS, dtype=g.dtype, device=g.device)  # (8, 3)
    at_corner = torch.einsum("bchw,kc->bhwk", g, corners)
    return at_corner - (g * clean.to(g.dtype)).sum(dim=1)[..., None]


def top_seeds(scores: torch.Tensor, k: int) -> np.ndarray:
    """(B, k', 5) int16 candidates (x, y, r, g, b) of the k' = min(k, 8 H W) lowest ``scores``
    (B, H, W, 8), lowest first."""
    n, height, width, n_corners = scores.shape
    k = min(int(k), height * width * n_corners)
    idx = torch.topk(scores.reshape(n, -1), k, dim=1, largest=False, sorted=True).indices.cpu().numpy()
    pixel, corner = np.divmod(idx, n_corners)
    cand = np.empty((n, k, _NDIM), dtype=np.int16)
    cand[..., Y], cand[..., X] = np.divmod(pixel, width)
    cand[..., R:] = _CORNERS[corner]
    return cand


def best_members(cand: np.ndarray, fit: np.ndarray, flip: np.ndarray,
                 size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``size`` lowest-probability rows of each image's (N, M, ...) candidates, fitness and flip
    flags, best first (ties keep candidate order); the refinement's starting population."""
    order = np.argsort(fit, axis=1, kind="stable")[:, :size]
    take = lambda a: np.take_along_axis(a, order.reshape(order.shape + (1,) * (a.ndim - 2)),  # noqa: E731
                                        axis=1)
    return take(cand), take(fit), take(flip)


# --------------------------------------------------------------------------- search driver


def _select(pop: np.ndarray, fit: np.ndarray, flip: np.ndarray, trial: np.ndarray,
            p_trial: np.ndarray, f_trial: np.ndarray) -> None:
    """DE selection in place: a trial replaces its parent when its true-class probability is lower."""
    better = p_trial < fit
    pop[better] = trial[better]
    fit[better] = p_trial[better]
    flip[better] = f_trial[better]


def _update_best(rows: np.ndarray, pop: np.ndarray, fit: np.ndarray, flip: np.ndarray,
                 best: np.ndarray, best_p: np.ndarray, best_f: np.ndarray) -> None:
    """Keep each image's best-so-far candidate (strictly lower true-class probability wins)."""
    j = fit.argmin(axis=1)
    a = np.arange(len(rows))
    improved = fit[a, j] < best_p[rows]
    r, jj = rows[improved], j[improved]
    best[r] = pop[improved, jj]
    best_p[r] = fit[improved, jj]
    best_f[r] = flip[improved, jj]


@dataclass
class _Best:
    """Per-image search state: best-so-far candidate, its probability and flip flag, queries spent."""

    cand: np.ndarray
    prob: np.ndarray
    flip: np.ndarray
    queries: np.ndarray

    @classmethod
    def empty(cls, n: int) -> "_Best":
        """No candidate yet (probability +inf), no queries."""
        return cls(np.zeros((n, _NDIM), dtype=np.int16), np.full(n, np.inf, dtype=np.float32),
                   np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int32))

    def update(self, rows: np.ndarray, pop: np.ndarray, fit: np.ndarray, flip: np.ndarray) -> None:
        """Fold an evaluated (len(rows), P) population into the best-so-far candidates."""
        _update_best(rows, pop, fit, flip, self.cand, self.prob, self.flip)


@dataclass
class _Problem:
    """The search inputs on the device plus the forward batch size; evaluates candidate rows."""

    model: torch.nn.Module
    clean: torch.Tensor   # uint8 (N, 3, H, W), never written to
    labels: torch.Tensor  # int64 (N,)
    mean: torch.Tensor
    std: torch.Tensor
    batch_size: int

    def evaluate(self, rows: np.ndarray, cand: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """True-class probabilities and flip flags of rows (image rows[k], candidate cand[k])."""
        return evaluate_candidates(self.model, self.clean, self.labels, rows, cand, self.mean,
                                   self.std, self.batch_size)


def _check_inputs(images: np.ndarray, labels: np.ndarray, indices: np.ndarray | None,
                  params: SearchParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate the arrays shared by all strategies; returns (images, labels, global indices)."""
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    n = images.shape[0]
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
    if params.batch_size < 0:
        raise ValueError(f"batch_size must be >= 1, or 0 for the device default, got {params.batch_size}")
    indices = np.arange(n) if indices is None else np.asarray(indices)
    if indices.shape != (n,) or (n and indices.min() < 0):
        raise ValueError(f"indices must be {n} non-negative global image indices")
    return images, labels, indices


def _problem(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, mean: Sequence[float],
             std: Sequence[float], device: torch.device, batch_size: int) -> _Problem:
    """Copy images (uint8, N x H x W x 3), labels and normalisation constants to the device."""
    src = np.ascontiguousarray(images)
    src_t = torch.from_numpy(src) if src.flags.writeable else torch.tensor(src)
    clean = src_t.to(device).permute(0, 3, 1, 2).contiguous()
    labels_t = torch.from_numpy(labels.astype(np.int64)).to(device)
    mean_t = torch.tensor(list(mean), dtype=torch.float32, device=device)
    std_t = torch.tensor(list(std), dtype=torch.float32, device=device)
    bs = int(batch_size) or default_batch_size(device)
    return _Problem(model, clean, labels_t, mean_t, std_t, bs)


def _evolve(prob: _Problem, keys: np.ndarray, active: np.ndarray, pop: np.ndarray, fit: np.ndarray,
            flip: np.ndarray, clean_correct: np.ndarray, best: _Best, *, gens: int, scale_f: float,
            stream: int, progress: bool, desc: str) -> None:
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
            u = uniforms(keys[active], stream + gen, (pop_size, _STEP_DRAWS))
            trial = mutate(pop, u, scale_f, height, width)
            p, f = prob.evaluate(np.repeat(active, pop_size), trial.reshape(-1, _NDIM))
            best.queries[active] += pop_size
            _select(pop, fit, flip, trial, p.reshape(-1, pop_size), f.reshape(-1, pop_size))
            best.update(active, pop, fit, flip)
            bar.update(1)
    finally:
        bar.close()


def _result(best: _Best, prob_before: np.ndarray, clean_correct: np.ndarray) -> dict[str, np.ndarray]:
    """The per-image output arrays shared by all strategies."""
    return {
        "x": best.cand[:, X].astype(np.int32),
        "y": best.cand[:, Y].astype(np.int32),
        "rgb": best.cand[:, R:].astype(np.uint8),
        "prob_before": prob_before.astype(np.float32),
        "prob_after": best.prob.astype(np.float32),
        "flipped": best.flip.copy(),
        "queries": best.queries,
        "clean_correct": clean_correct.astype(bool),
    }


def search_points(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, *,
                  mean: Sequence[float], std: Sequence[float], params: SearchParams,
                  device: str | torch.device = "cpu", progress: bool = True,
                  indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Find each image's most sensitive pixel with the one-pixel attack of ``params.strategy``
    ("de": Su et al.'s non-targeted DE; "seeded": see seeded_search).

    images: uint8 (N, H, W, 3); labels: int (N,); the model (already on ``device``) maps the
    normalised float (B, 3, H, W) batch to logits. ``indices`` are the images' global indices
    (default arange(N)) and key the randomness, so shards reproduce the full run. Returns arrays
    of length N: x, y (int32), rgb (uint8, N x 3), prob_before, prob_after (float32), flipped,
    queries (int32, forwards spent incl. the clean one), clean_correct.
    """
    _check_strategy(params.strategy)
    if params.strategy == "seeded":
        return seeded_search(model, images, labels, mean=mean, std=std, params=params,
                             device=device, progress=progress, indices=indices)
    images, labels, indices = _check_inputs(images, labels, indices, params)
    n, height, width, _ = images.shape
    pop_size, gens = int(params.population), int(params.generations)
    if pop_size < 4:
        raise ValueError("DE/rand/1 needs population >= 4 (three donors distinct from the member)")
    if gens < 0:
        raise ValueError("generations must be >= 0")

    device = torch.device(device)
    keys = image_keys(params.seed, indices)
    best = _Best.empty(n)
    model = inference_model(model, device)
    with torch.inference_mode():
        prob = _problem(model, images, labels, mean, std, device, params.batch_size)
        everyone = np.arange(n)
        prob_before, wrong = prob.evaluate(everyone, None)
        clean_correct = ~wrong
        best.queries += 1

        # Generation 0: Su et al.'s random initial population.
        pop = initial_population(uniforms(keys, 0, (pop_size, _INIT_DRAWS)), height, width)
        p, f = prob.evaluate(np.repeat(everyone, pop_size), pop.reshape(-1, _NDIM))
        fit, flip = p.reshape(n, pop_size), f.reshape(n, pop_size)
        best.queries += pop_size
        best.update(everyone, pop, fit, flip)
        _evolve(prob, keys, everyone, pop, fit, flip, clean_correct, best, gens=gens,
                scale_f=params.scale_f, stream=0, progress=progress, desc="point search")
    return _result(best, prob_before, clean_correct)


def _seeds(prob: _Problem, k: int) -> np.ndarray:
    """(N, k', 5) int16 first-order seeds of every image (see corner_scores), one forward+backward per
    image in chunks of the batch size; only the chosen candidates are kept, never the score maps."""
    n = len(prob.clean)
    device = prob.clean.device
    out = []
    for s in range(0, n, prob.batch_size):
        e = min(s + prob.batch_size, n)
        rows = torch.arange(s, e, device=device)
        with torch.no_grad():
            batch = build_perturbed(prob.clean, rows, torch.arange(e - s, device=device), None,
                                    prob.mean, prob.std)
        grad = input_gradient(prob.model, batch, prob.labels[s:e])
        out.append(top_seeds(corner_scores(grad, prob.clean[s:e], prob.std), k))
    height, width = prob.clean.shape[2:]
    return np.concatenate(out) if out else np.zeros((0, min(k, 8 * height * width), _NDIM), np.int16)


def seeded_search(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, *,
                  mean: Sequence[float], std: Sequence[float], params: SearchParams,
                  device: str | torch.device = "cpu", progress: bool = True,
                  indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """One-pixel attack seeded by the input gradient, refined by a short DE; same inputs and
    outputs as search_points (whatever ``params.strategy`` says).

    Per image: one forward+backward gives the gradient of log p(label); its first-order prediction
    (corner_scores) ranks all 8 H W (pixel, RGB-cube corner) pairs and the ``top_k`` best are
    evaluated. Unless the clean prediction is correct and a seed already flips it, DE/rand/1 (factor
    ``scale_f``, no crossover) then runs ``refine_generations`` generations from the best
    ``refine_population`` seeds (topped up with Su et al.'s random candidates when there are fewer
    seeds), stopping early on a flip like search_points. ``queries`` counts the clean forward, the
    gradient pass as one query, and every candidate evaluated: 2 + top_k, plus
    max(refine_population - top_k, 0) + refine_population * generations run when refined.
    Deterministic and shard-independent: the random draws are keyed by (seed, global index).
    """
    _check_strategy(params.strategy)
    images, labels, indices = _check_inputs(images, labels, indices, params)
    n, height, width, _ = images.shape
    pop_size, gens, top_k = int(params.refine_population), int(params.refine_generations), int(params.top_k)
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if gens < 0:
        raise ValueError(f"refine_generations must be >= 0, got {gens}")
    if gens and pop_size < 4:
        raise ValueError("DE/rand/1 refinement needs refine_population >= 4 (three donors distinct from the member)")

    device = torch.device(device)
    keys = image_keys(params.seed, indices)
    best = _Best.empty(n)
    model = inference_model(model, device)
    with torch.no_grad():  # not inference mode: the gradient pass differentiates through these
        prob = _problem(model, images, labels, mean, std, device, params.batch_size)
    everyone = np.arange(n)
    with torch.inference_mode():
        prob_before, wrong = prob.evaluate(everyone, None)
    clean_correct = ~wrong
    seeds = _seeds(prob, top_k)
    best.queries += 2  # the clean forward and the gradient forward+backward
    with torch.inference_mode():
        n_seeds = seeds.shape[1]
        p, f = prob.evaluate(np.repeat(everyone, n_seeds), seeds.reshape(-1, _NDIM))
        fit, flip = p.reshape(n, n_seeds), f.reshape(n, n_seeds)
        best.queries += n_seeds
        best.update(everyone, seeds, fit, flip)
        if gens == 0:
            return _result(best, prob_before, clean_correct)

        active = everyone[~(clean_correct & best.flip)]
        pop, fit, flip = best_members(seeds[active], fit[active], flip[active], pop_size)
        n_fill = pop_size - pop.shape[1]
        if n_fill > 0 and len(active):
            fill = initial_population(uniforms(keys[active], _SEEDED_STREAM, (n_fill, _INIT_DRAWS)),
                                      height, width)
            p, f = prob.evaluate(np.repeat(active, n_fill), fill.reshape(-1, _NDIM))
            p, f = p.reshape(-1, n_fill), f.reshape(-1, n_fill)
            best.queries[active] += n_fill
            best.update(active, fill, p, f)
            pop = np.concatenate([pop, fill], axis=1)
            fit, flip = np.concatenate([fit, p], axis=1), np.concatenate([flip, f], axis=1)
        _evolve(prob, keys, active, pop, fit, flip, clean_correct, best, gens=gens,
                scale_f=params.scale_f, stream=_SEEDED_STREAM, progress=progress,
                desc="seeded point search")
    return _result(best, prob_before, clean_correct)
