"""Eq. 4 equals a hand computation on fixed tensors."""

import math

import torch

from pasm.train.losses import pasm_loss


def test_eq4_by_hand():
    s = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 1.0]])
    t = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([0, 2])

    def ce(row, k):
        return -(row[k] - math.log(sum(math.exp(v) for v in row)))

    ce_mean = (ce([2.0, 0.0, -1.0], 0) + ce([0.5, 0.5, 1.0], 2)) / 2
    mse = ((1.0 + 1.0 + 1.0) + (0.25 + 0.25 + 1.0)) / 6
    alpha, beta = 0.7, 0.3
    assert math.isclose(pasm_loss(s, y, t, alpha, beta).item(), alpha * ce_mean + beta * mse, rel_tol=1e-6)


def test_without_teacher_it_is_cross_entropy():
    s = torch.tensor([[2.0, 0.0, -1.0]])
    y = torch.tensor([1])
    assert torch.isclose(pasm_loss(s, y), torch.nn.functional.cross_entropy(s, y))
