"""Tests of the inference copy of a network: folded batch norms, same outputs, caller untouched."""

from __future__ import annotations

import pytest
import torch

from pasm.nn.inference import autocast, autocast_dtype, inference_model
from pasm.nn.models import build_model


class LenModel(torch.nn.Module):
    """BatchNorm plus a Python len() on the input: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)).mean(dim=(2, 3)) + len(x)


def _randomise_bn(model: torch.nn.Module) -> None:
    """Non-trivial running statistics and affine parameters, so folding has something to fold."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=gen))
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen))


def test_folds_batch_norm_and_keeps_outputs():
    torch.manual_seed(0)
    model = build_model("compact", 7, 8)
    _randomise_bn(model)
    model.train()
    prepared = inference_model(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())
    assert model.training and any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        want = model.eval()(x)
        got = prepared(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_untraceable_model_is_used_unfolded():
    model = LenModel()
    _randomise_bn(model)
    prepared = inference_model(model)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(prepared(x), model.eval()(x))


def test_precision_auto_is_float32_on_cpu_and_bfloat16_when_asked():
    assert autocast_dtype("cpu", "auto") is None
    assert autocast_dtype("cuda", "auto") is torch.bfloat16
    assert autocast_dtype("cpu", "bfloat16") is torch.bfloat16
    assert autocast_dtype("cuda", "float32") is None
    with pytest.raises(ValueError, match="'half'"):
        autocast_dtype("cpu", "half")


def test_bfloat16_forward_runs_in_bfloat16_and_stays_close_to_float32():
    torch.manual_seed(0)
    model = build_model("compact", 7, 8)
    _randomise_bn(model)
    x = torch.randn(6, 3, 32, 32)
    with torch.inference_mode():
        exact = inference_model(model, "cpu", "float32")(x)
        with autocast("cpu", "bfloat16"):
            inside = model.eval()(x)
        bf16 = inference_model(model, "cpu", "bfloat16")(x)
    assert exact.dtype is torch.float32 and inside.dtype is torch.bfloat16 and bf16.dtype is torch.bfloat16
    assert not torch.equal(bf16.float(), exact)  # it did run in bfloat16
    assert torch.allclose(bf16.float(), exact, rtol=0.05, atol=0.05 * exact.abs().max().item())
