"""How CUDA computes: IEEE float32 where float32 is asked for, and optionally deterministic kernels."""

from __future__ import annotations

import os

import torch


def set_cuda_numerics(deterministic: bool) -> None:
    """TF32 off (float32 means float32; bfloat16 comes only from autocast), and with ``deterministic``
    cuDNN's deterministic algorithms and torch.use_deterministic_algorithms (cuBLAS needs its
    workspace setting for that, set here before the first cuBLAS call)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True)
