"""The one switch between the PyTorch reference and the Triton kernels (`kernels: auto|torch|triton`).

Resolved per call from the tensor's device, so one built model serves CPU and GPU alike.
`triton` takes the kernels on CUDA; off CUDA it needs the Triton interpreter (TRITON_INTERPRET=1), as
the CPU kernel tests run it.  With the kernels the transformer runs unpadded on batches that come
with a Packing (varlen attention, every other op on the real tokens only) and fuses each post-LN
sublayer's bias + dropout + residual + LayerNorm (`runs_unpadded`, `fuses_sublayer`).

`auto` takes the PyTorch reference (fused LayerNorm, SDPA) on every device while AUTO_TAKES_TRITON is
False.  History: on an H100 the first Triton kernels made BERT-base/large pre-training 1.6-2.8x slower
(README, "Kernels on a GPU": their per-call host cost), so they became opt-in.  The unpadded path and
the graph-capturable ops are built to win, but no GPU has measured them yet: flip AUTO_TAKES_TRITON to
True (one line) only when `bash launch/gpu_measure.sh kernels` shows `--kernels triton` faster than
`torch` for BERT training, and write the measured shapes beside it and in the README's "Kernels".
"""
from __future__ import annotations

import os
from types import ModuleType

import torch

import uer_ds.kernels
from uer_ds.kernels import reference


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


_UNTRIED = object()
_triton_ops: object = _UNTRIED  # the module once imported (None: unavailable)


def triton_ops() -> ModuleType | None:
    """The kernel package `uer_ds.kernels` with its Triton ops loaded (`load()`), or None where Triton (or
    a kernel) is unavailable.  Loaded once and kept, so torch.compile reads a global here instead of
    tracing an import (a graph break); the modules that take a `kernels` mode call `prepare` when
    built, so the import happens outside any compiled region."""
    global _triton_ops
    if _triton_ops is _UNTRIED:
        try:
            _triton_ops = uer_ds.kernels.load()
        except ImportError:
            _triton_ops = None
    return _triton_ops


def prepare(mode: str) -> None:
    """Import the Triton kernels now if switch `mode` may take them (called by the kernel slots' modules
    when they are built)."""
    if mode == "triton" or (mode == "auto" and AUTO_TAKES_TRITON):
        triton_ops()


# `kernels: auto` takes the Triton kernels on CUDA when True.  Not measured yet on the unpadded path:
# see the module docstring for the measurement that decides it.
AUTO_TAKES_TRITON = False


def kernel_ops(mode: str, x: torch.Tensor) -> ModuleType:
    """The module whose `layer_norm`, `attention`, `varlen_attention` and `bias_dropout_add_layer_norm`
    serve tensor `x` under switch `mode`."""
    if mode == "torch":
        return reference
    if mode == "auto":
        if AUTO_TAKES_TRITON and x.is_cuda:
            return triton_ops() or reference
        return reference
    if mode != "triton":
        raise ValueError(f"kernels has value '{mode}': must be one of auto, torch, triton")
    if not (x.is_cuda or _interpreting()):
        raise RuntimeError(f"kernels='triton' needs CUDA tensors (got device {x.device}) or the Triton "
                           "interpreter (TRITON_INTERPRET=1 set before start-up); use kernels='auto' or 'torch'")
    ops = triton_ops()
    if ops is None:
        raise RuntimeError("kernels='triton': the Triton kernels (uer_ds.kernels.load()) cannot be imported "
                           "in this installation; use kernels='auto' or 'torch'")
    return ops


def fuses_sublayer(ops: ModuleType) -> bool:
    """Whether `ops` (from kernel_ops) fuses a post-LN sublayer's closing bias + dropout + residual +
    LayerNorm into one kernel (the Triton ops); the reference keeps PyTorch's own op chain."""
    return ops is not reference


def runs_unpadded(mode: str, x: torch.Tensor) -> bool:
    """Whether the transformer runs packed batches unpadded under switch `mode` for tensor `x`: with the
    Triton kernels (varlen attention; PyTorch's padded SDPA is the reference path)."""
    return kernel_ops(mode, x) is not reference
