"""Kernels for the hot path (installed as the package `uer_ds.kernels`).

- `reference`: the pure-PyTorch implementations (the CPU path, the tests' ground truth, the
  benchmarks' baseline).  Importing this package never imports Triton, so the CPU model path works
  on machines without a GPU (or without Triton).
- `layer_norm(x, weight, bias, eps=1e-12, residual=None)` and `attention(q, k, v,
  key_padding_mask=None, causal=False, dropout_p=0.0, softmax_scale=None)`: the Triton kernels
  (modules `fused_layer_norm`, `flash_attention`: not named after the functions, because importing a
  submodule would replace the package attribute of the same name), with the references'
  signatures, differentiable.  They import Triton on first call; on CPU they need
  TRITON_INTERPRET=1 set before that.
- The model picks between the two through its `kernels` switch (uer_ds.models.layers.dispatch,
  which imports `triton_ops`).
"""
from __future__ import annotations

from typing import Optional

import torch

from uer_ds.kernels import reference


def layer_norm(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor], eps: float = 1e-12,
               residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Triton LayerNorm(x + residual) over the last dim (see uer_ds.kernels.fused_layer_norm.layer_norm)."""
    from uer_ds.kernels.fused_layer_norm import layer_norm as triton_layer_norm

    return triton_layer_norm(x, weight, bias, eps, residual=residual)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: Optional[torch.Tensor] = None,
              causal: bool = False, dropout_p: float = 0.0, softmax_scale: Optional[float] = None) -> torch.Tensor:
    """Triton FlashAttention-2-style attention (see uer_ds.kernels.flash_attention.attention)."""
    from uer_ds.kernels.flash_attention import attention as triton_attention

    return triton_attention(q, k, v, key_padding_mask, causal, dropout_p, softmax_scale)


__all__ = ["attention", "layer_norm", "reference"]
