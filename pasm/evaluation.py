"""Batched inference and classification metrics (accuracy, mean class accuracy, confusion)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from pasm.augment import to_input


def predict_logits(
    model: nn.Module,
    images: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    batch_size: int = 50,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Logits (N, C) of uint8 (N, H, W, 3) images, in eval and inference mode."""
    was_training = model.training
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(device)
            out.append(model(to_input(chunk, mean, std)).float().cpu())
    model.train(was_training)
    if not out:
        return np.zeros((0, 0), np.float32)
    return torch.cat(out).numpy()


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts C[i, j] of samples of true class i predicted as class j."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, mean class accuracy over classes present, per-class accuracy and confusion matrix."""
    k = len(classes)
    cm = confusion_matrix(y_true, y_pred, k)
    support = cm.sum(1)
    per_class = {
        name: (float(cm[i, i] / support[i]) if support[i] else None) for i, name in enumerate(classes)
    }
    present = [v for v in per_class.values() if v is not None]
    n = int(cm.sum())
    return {
        "n": n,
        "accuracy": float(np.trace(cm) / n) if n else None,
        "mean_class_accuracy": float(np.mean(present)) if present else None,
        "per_class_accuracy": per_class,
        "support": {name: int(support[i]) for i, name in enumerate(classes)},
        "confusion_matrix": cm.tolist(),
    }
