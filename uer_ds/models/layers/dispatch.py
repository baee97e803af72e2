"""The one switch between the PyTorch reference and the Triton kernels (`kernels: auto|torch|triton`).

Resolved per call from the tensor's device, so one built model serves CPU and GPU alike.
`auto` takes the PyTorch reference (fused LayerNorm, SDPA) on every device: on an H100 the Triton
kernels made BERT-base/large pre-training 1.6-2.8x slower (README, "Kernels on a GPU": their CPU-side
launch cost is 5-8x PyTorch's per call), so they are opt-in until they win.  `triton` takes them on
CUDA; off CUDA it needs the Triton interpreter (TRITON_INTERPRET=1), as the CPU kernel tests run it.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

import torch

from uer_ds.kernels import reference


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_ops() -> ModuleType | None:
    """The Triton kernel package, or None where Triton (or a kernel) is unavailable."""
    try:
        ops = importlib.import_module("uer_ds.kernels.triton_ops")
    except ImportError:
        return None
    return ops


def kernel_ops(mode: str, x: torch.Tensor) -> ModuleType:
    """The module whose `layer_norm` and `attention` serve tensor `x` under switch `mode`."""
    if mode == "torch":
        return reference
    if mode == "auto":
        return reference
    if mode != "triton":
        raise ValueError(f"kernels has value '{mode}': must be one of auto, torch, triton")
    if not (x.is_cuda or _interpreting()):
        raise RuntimeError(f"kernels='triton' needs CUDA tensors (got device {x.device}) or the Triton "
                           "interpreter (TRITON_INTERPRET=1 set before start-up); use kernels='auto' or 'torch'")
    ops = triton_ops()
    if ops is None:
        raise RuntimeError("kernels='triton': the Triton kernels (uer_ds.kernels.triton_ops) cannot be imported "
                           "in this installation; use kernels='auto' or 'torch'")
    return ops
