"""Pictures a person would rather see than read: masked-sample grids and confusion matrices."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pasm.h5store import atomic_path  # noqa: E402


def _save(fig: plt.Figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def masked_grid(
    clean: np.ndarray, masked: np.ndarray, labels: np.ndarray, x: np.ndarray, y: np.ndarray,
    classes: Sequence[str], path: str | Path, per_class: int = 4, title: str = "",
) -> None:
    """Grid like the paper's Fig. 3: one row per class, each clean image beside its masked copy (point in red)."""
    picks = [np.flatnonzero(labels == c)[:per_class] for c in range(len(classes))]
    rows = [(c, p) for c, p in enumerate(picks) if len(p)]
    if not rows:
        raise ValueError("no images to show")
    fig, axes = plt.subplots(len(rows), 2 * per_class, figsize=(1.0 * 2 * per_class, 1.05 * len(rows)), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("off")
    for r, (c, idx) in enumerate(rows):
        for j, i in enumerate(idx):
            for k, img in enumerate((clean[i], masked[i])):
                ax = axes[r, 2 * j + k]
                ax.axis("on")
                ax.imshow(img, interpolation="nearest")
                if k == 1:
                    ax.plot([x[i]], [y[i]], "r.", markersize=3)
                if r == 0:
                    ax.set_title("clean" if k == 0 else "masked", fontsize=7)
        axes[r, 0].set_ylabel(classes[c], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    _save(fig, path)


def confusion_plot(cm: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "") -> None:
    """Row-normalised confusion matrix with the fraction in each cell (the paper's Fig. 5)."""
    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    _save(fig, path)
