"""The paper's objectives: Eq. 1 (cross-entropy) and Eq. 4 (cross-entropy plus logit MSE to a teacher)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pasm_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None = None,
    alpha: float = 1.0,
    beta: float = 0.0,
) -> torch.Tensor:
    """alpha * CE(student(x_aug), y) + beta * MSE(student(x_aug), teacher(x)) (Eq. 4).

    Both terms are means (CE over the batch, MSE over batch x classes); without a teacher, or
    with beta = 0, this is Eq. 1 scaled by alpha.
    """
    loss = alpha * F.cross_entropy(student_logits, labels)
    if teacher_logits is not None and beta > 0:
        loss = loss + beta * F.mse_loss(student_logits, teacher_logits.to(student_logits.dtype))
    return loss
