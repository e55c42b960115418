"""Classification metrics (accuracy, mean class accuracy, precision/recall/F1, confusion)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts C[i, j] of samples of true class i predicted as class j."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def _ratio(num: np.ndarray, den: np.ndarray) -> list[float | None]:
    """Elementwise num / den, None where den is 0 (an undefined ratio is not a 0 or a 1)."""
    return [float(a / b) if b else None for a, b in zip(num, den)]


def per_class_scores(cm: np.ndarray) -> dict[str, list[float | None]]:
    """Precision, recall and F1 of every class from a counts confusion matrix (rows true, columns predicted).

    0/0 is None, never 0: precision of a class never predicted, recall of a class with no true
    sample. F1 is 2TP / (2TP + FP + FN), so it is 0 for a class in the truth that is never
    predicted (or predicted but absent from the truth) and None only for a class absent from both.
    """
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm)
    predicted, support = cm.sum(0), cm.sum(1)
    return {
        "precision": _ratio(tp, predicted),
        "recall": _ratio(tp, support),
        "f1": _ratio(2 * tp, predicted + support),
    }


def normalized_confusion(cm: np.ndarray) -> list[list[float] | None]:
    """Row-normalised confusion matrix (each true class sums to 1); None for a class with no true sample."""
    cm = np.asarray(cm, dtype=float)
    return [(row / row.sum()).tolist() if row.sum() else None for row in cm]


def _mean(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, mean class accuracy, per-class precision/recall/F1, macro F1 and confusion matrices.

    Mean class accuracy is the mean recall over classes with true samples; macro F1 the mean F1
    over classes in the truth or the predictions (classes absent from both have F1 None and are
    left out). confusion_matrix holds counts, confusion_matrix_normalized the same rows divided
    by their support.
    """
    k = len(classes)
    cm = confusion_matrix(y_true, y_pred, k)
    support, predicted = cm.sum(1), cm.sum(0)
    scores = per_class_scores(cm)
    n = int(cm.sum())
    return {
        "n": n,
        "accuracy": float(np.trace(cm) / n) if n else None,
        "mean_class_accuracy": _mean(scores["recall"]),
        "macro_f1": _mean(scores["f1"]),
        "per_class_accuracy": dict(zip(classes, scores["recall"])),
        "per_class": {
            name: {
                "precision": scores["precision"][i],
                "recall": scores["recall"][i],
                "f1": scores["f1"][i],
                "support": int(support[i]),
                "predicted": int(predicted[i]),
            }
            for i, name in enumerate(classes)
        },
        "support": {name: int(support[i]) for i, name in enumerate(classes)},
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_normalized": normalized_confusion(cm),
    }
