"""Settings of the point search, and the device's default forward batch."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

# The strategies pasm.search.STRATEGIES implements (named here so settings are checked before any import).
STRATEGY_NAMES = ("de", "seeded", "ranked")


@dataclass
class SearchParams:
    """Settings of the one-pixel point search (strategy, DE and seeding sizes)."""

    population: int = 400  # Su et al.'s default
    generations: int = 100
    scale_f: float = 0.5  # DE mutation factor F
    batch_size: int = 50  # perturbed images per forward pass; 0 = default_batch_size(device)
    seed: int = 0
    strategy: str = "de"  # "de" (Su et al.), "seeded" (gradient seeds + short DE) or "ranked"
    top_k: int = 40  # seeded: best first-order (pixel, RGB corner) seeds tried per image
    refine_generations: int = 2  # seeded: DE generations after seeding (0: seeding only)
    refine_population: int = 20  # seeded: DE population of the refinement
    top_pixels: int = 128  # ranked: best first-order pixels tried per image, each with its best corner
    local_rounds: int = 4  # ranked: rounds of local search around the best candidate
    local_radius: int = 1  # ranked: pixels each side of the best candidate a local round tries
    precision: str = "auto"  # forwards: auto (bfloat16 on CUDA, float32 on CPU), bfloat16 or float32

    def __post_init__(self) -> None:
        """Reject an unknown strategy when the settings are built, before any model is loaded."""
        check_strategy(self.strategy)

    @classmethod
    def from_config(cls, block: dict[str, Any], seed: int) -> "SearchParams":
        """The settings of a validated ``method.search`` block (keys that are not settings, such as
        ``threads``, are the job's) with the stage's seed."""
        names = {f.name for f in fields(cls)} - {"seed"}
        return cls(seed=seed, **{k: v for k, v in block.items() if k in names})


def check_strategy(name: str) -> None:
    """ValueError naming ``name`` unless it is one of STRATEGY_NAMES."""
    if name not in STRATEGY_NAMES:
        raise ValueError(f"unknown point-search strategy {name!r}; expected one of {STRATEGY_NAMES}")


def default_batch_size(device: str | torch.device) -> int:
    """Forward batch used when ``batch_size`` is 0: 50 on CPU (fastest measured for a compact CNN:
    1065, 3211, 3664, 1769, 1447 images/s at 1, 10, 50, 128, 512), 1024 on CUDA (keeps it busy)."""
    return 1024 if torch.device(device).type == "cuda" else 50
