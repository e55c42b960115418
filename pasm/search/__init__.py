"""The sensitive-point search of PASM (Sec. 3.2): for every training image, the one pixel whose
change lowers the true-class probability most, found by a one-pixel adversarial attack.

Modules, in import order: ``rng`` (counter-based random numbers), ``params`` (settings),
``candidates`` (batched evaluation of candidate pixels), ``de`` (Su et al.'s differential
evolution), ``seeded`` (gradient seeds refined by a short DE) and ``ranked`` (gradient-ranked
candidates evaluated exactly, then a local search). ``STRATEGIES`` maps the
config's ``method.search.strategy`` to its function; every strategy takes the same arguments and
returns the same arrays. Forwards run on a prepared copy of the network (pasm.nn.inference.inference_model):
a strategy makes it unless given one (``prepared=True``).

Semantics worth knowing:

* Randomness is keyed by (seed, global image index): a shard ``images[a:b]`` with
  ``indices=arange(a, b)`` reproduces the full run's rows a:b (bit-exactly when the model's
  per-row outputs do not depend on the batch they are computed in).
* ``flipped`` is "argmax of the perturbed image != label"; for an image misclassified on the clean
  input it is usually True, so combine it with ``clean_correct`` when a real flip is meant.
* ``prob_after`` is the lowest true-class probability among evaluated candidates; it is below
  ``prob_before`` unless no candidate pixel lowers it (it is not clamped to the clean value).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import MappingProxyType

import numpy as np
import torch

from pasm.search.de import de_search
from pasm.search.params import STRATEGY_NAMES, SearchParams, check_strategy, default_batch_size
from pasm.search.ranked import ranked_search
from pasm.search.seeded import seeded_search

__all__ = ["STRATEGIES", "SearchParams", "default_batch_size", "find_points"]

STRATEGIES: MappingProxyType[str, Callable[..., dict[str, np.ndarray]]] = MappingProxyType(
    {"de": de_search, "seeded": seeded_search, "ranked": ranked_search}
)
assert tuple(STRATEGIES) == STRATEGY_NAMES


def find_points(
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
    """Each image's most sensitive pixel by the strategy ``params.strategy`` (see STRATEGIES).
    ``prepared``: ``model`` is already ``pasm.nn.inference.inference_model(model, device,
    params.precision)``, so a caller that searches block after block folds the network once."""
    check_strategy(params.strategy)
    return STRATEGIES[params.strategy](
        model,
        images,
        labels,
        mean=mean,
        std=std,
        params=params,
        device=device,
        progress=progress,
        indices=indices,
        prepared=prepared,
    )
