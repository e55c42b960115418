"""Batched evaluation of one-pixel candidates: many images' candidates in shared forward passes,
perturbed images built by indexed writes on the device, best-so-far bookkeeping shared by the
strategies.

A candidate is one row (x, y, r, g, b) of an integer array (columns X, Y, R, G, B). Forwards run on
a copy of the model with convolution+batch-norm pairs folded and channels_last batches
(pasm.nn.inference), at the search's precision (bfloat16 autocast on CUDA by default; probabilities
are still computed in float32).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pasm.nn.inference import inference_model
from pasm.search.params import SearchParams, default_batch_size

# Candidate layout: columns of a (..., 5) integer array.
X, Y, R, G, B = range(5)
NDIM = 5


def _normalise(u8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 values -> (v/255 - mean) / std, float32; channel axis must broadcast with mean."""
    return (u8.float() / 255.0 - mean) / std


def build_perturbed(
    clean: torch.Tensor,
    uniq_idx: torch.Tensor,
    row_idx: torch.Tensor,
    cand: torch.Tensor | None,
    mean: torch.Tensor,
    std: torch.Tensor,
) -> torch.Tensor:
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


def forward(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Float32 logits of a channels_last batch from a model prepared by
    pasm.nn.inference.inference_model (which fixed its precision)."""
    return model(batch.contiguous(memory_format=torch.channels_last)).float()


def _true_prob(
    model: torch.nn.Module, batch: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """True-class softmax probability and "prediction != label" for one forward pass."""
    logits = forward(model, batch)
    prob = logits.softmax(dim=1).gather(1, labels[:, None])[:, 0]
    return prob, logits.argmax(dim=1) != labels


def evaluate_candidates(
    model: torch.nn.Module,
    clean: torch.Tensor,
    labels: torch.Tensor,
    img_idx: np.ndarray,
    cand: np.ndarray | None,
    mean: torch.Tensor,
    std: torch.Tensor,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
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
    # Results go into two preallocated tensors: one small tensor kept per forward chunk (hundreds of
    # thousands per shard) pinned the allocator's heap between the chunks' large temporaries, so
    # freed memory was never returned and the seeded search grew to 12.8 GB at 8,000 faces.
    probs = torch.empty(len(img_idx), dtype=torch.float32, device=device)
    flips = torch.empty(len(img_idx), dtype=torch.bool, device=device)
    for s in range(0, len(img_idx), batch_size):
        e = min(s + batch_size, len(img_idx))
        uniq = run_images_t[int(run_of_row[s]) : int(run_of_row[e - 1]) + 1]
        batch = build_perturbed(clean, uniq, local_t[s:e], None if cand_t is None else cand_t[s:e], mean, std)
        probs[s:e], flips[s:e] = _true_prob(model, batch, labels_t[s:e])
        del batch
    return probs.cpu().numpy(), flips.cpu().numpy()


def _update_best(
    rows: np.ndarray,
    pop: np.ndarray,
    fit: np.ndarray,
    flip: np.ndarray,
    best: np.ndarray,
    best_p: np.ndarray,
    best_f: np.ndarray,
    flip_first: np.ndarray | None = None,
) -> None:
    """Keep each image's best-so-far candidate: strictly lower true-class probability wins, or, for
    the rows where ``flip_first`` is True, a candidate that flips the prediction before any that
    does not, then the lower probability."""
    score, current = fit, best_p[rows]
    if flip_first is not None:  # probabilities are in [0, 1]: a counted flip always ranks first
        score = fit - 2.0 * (flip & flip_first[:, None])
        current = current - 2.0 * (best_f[rows] & flip_first)
    j = score.argmin(axis=1)
    a = np.arange(len(rows))
    improved = score[a, j] < current
    r, jj = rows[improved], j[improved]
    best[r] = pop[improved, jj]
    best_p[r] = fit[improved, jj]
    best_f[r] = flip[improved, jj]


@dataclass
class Best:
    """Per-image search state: best-so-far candidate, its probability and flip flag, queries spent."""

    cand: np.ndarray
    prob: np.ndarray
    flip: np.ndarray
    queries: np.ndarray

    @classmethod
    def empty(cls, n: int) -> "Best":
        """No candidate yet (probability +inf), no queries."""
        return cls(
            np.zeros((n, NDIM), dtype=np.int16),
            np.full(n, np.inf, dtype=np.float32),
            np.zeros(n, dtype=bool),
            np.zeros(n, dtype=np.int32),
        )

    def update(
        self,
        rows: np.ndarray,
        pop: np.ndarray,
        fit: np.ndarray,
        flip: np.ndarray,
        flip_first: np.ndarray | None = None,
    ) -> None:
        """Fold an evaluated (len(rows), P) population into the best-so-far candidates (a flip first
        for the rows where ``flip_first``, e.g. those whose clean prediction is correct)."""
        _update_best(rows, pop, fit, flip, self.cand, self.prob, self.flip, flip_first)


@dataclass
class Problem:
    """The search inputs on the device plus the forward batch size; evaluates candidate rows."""

    model: torch.nn.Module
    clean: torch.Tensor  # uint8 (N, 3, H, W), never written to
    labels: torch.Tensor  # int64 (N,)
    mean: torch.Tensor
    std: torch.Tensor
    batch_size: int

    def evaluate(self, rows: np.ndarray, cand: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """True-class probabilities and flip flags of rows (image rows[k], candidate cand[k])."""
        return evaluate_candidates(
            self.model, self.clean, self.labels, rows, cand, self.mean, self.std, self.batch_size
        )


def check_inputs(
    images: np.ndarray, labels: np.ndarray, indices: np.ndarray | None, params: SearchParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def make_problem(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    batch_size: int,
) -> Problem:
    """Copy images (uint8, N x H x W x 3), labels and normalisation constants to the device."""
    src = np.ascontiguousarray(images)
    src_t = torch.from_numpy(src) if src.flags.writeable else torch.tensor(src)
    clean = src_t.to(device).permute(0, 3, 1, 2).contiguous()
    labels_t = torch.from_numpy(labels.astype(np.int64)).to(device)
    mean_t = torch.tensor(list(mean), dtype=torch.float32, device=device)
    std_t = torch.tensor(list(std), dtype=torch.float32, device=device)
    bs = int(batch_size) or default_batch_size(device)
    return Problem(model, clean, labels_t, mean_t, std_t, bs)


def start(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    params: SearchParams,
    device: torch.device,
    prepared: bool,
) -> tuple[Problem, np.ndarray, np.ndarray]:
    """The problem of a strategy that takes input gradients (tensors made outside inference mode),
    with the prepared model unless ``prepared``, and its clean forward: (problem, prob_before,
    clean_correct)."""
    if not prepared:  # a caller that searches many blocks prepares it once
        model = inference_model(model, device, params.precision)
    with torch.no_grad():  # not inference mode: the gradient pass differentiates through these
        prob = make_problem(model, images, labels, mean, std, device, params.batch_size)
    with torch.inference_mode():
        prob_before, wrong = prob.evaluate(np.arange(len(images)), None)
    return prob, prob_before, ~wrong


def result_arrays(best: Best, prob_before: np.ndarray, clean_correct: np.ndarray) -> dict[str, np.ndarray]:
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
