"""Kernels for the hot path (installed as the package `uer_ds.kernels`).

- `reference`: the pure-PyTorch implementations (the CPU path, the tests' ground truth, the
  benchmarks' baseline).  Importing this package never imports Triton, so the CPU model path works
  on machines without a GPU (or without Triton).
- `layer_norm(x, weight, bias, eps=1e-12, residual=None)`, `attention(q, k, v,
  key_padding_mask=None, causal=False, dropout_p=0.0, softmax_scale=None)`, `varlen_attention(q, k,
  v, cu_seqlens, max_seqlen, causal=False, dropout_p=0.0, softmax_scale=None)` (packed (N, H, D)
  sequences) and `bias_dropout_add_layer_norm(x, bias, residual, weight, ln_bias, eps=1e-12,
  dropout_p=0.0)`: the Triton kernels (modules `fused_layer_norm`, `flash_attention`,
  `varlen_flash_attention`: not named after the functions, because importing a submodule would
  replace the package attribute of the same name), with the references' signatures,
  differentiable, registered as torch.library operators (`uer_ds::...`) so torch.compile traces
  them.  They import Triton on first call; on CPU they need
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


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                     causal: bool = False, dropout_p: float = 0.0, softmax_scale: Optional[float] = None
                     ) -> torch.Tensor:
    """Triton varlen FlashAttention-2 over packed sequences (see uer_ds.kernels.varlen_flash_attention)."""
    from uer_ds.kernels.varlen_flash_attention import varlen_attention as triton_varlen_attention

    return triton_varlen_attention(q, k, v, cu_seqlens, max_seqlen, causal, dropout_p, softmax_scale)


def bias_dropout_add_layer_norm(x: torch.Tensor, bias: Optional[torch.Tensor], residual: Optional[torch.Tensor],
                                weight: Optional[torch.Tensor], ln_bias: Optional[torch.Tensor], eps: float = 1e-12,
                                dropout_p: float = 0.0) -> torch.Tensor:
    """Triton LayerNorm(dropout(x + bias) + residual) (see uer_ds.kernels.fused_layer_norm)."""
    from uer_ds.kernels.fused_layer_norm import bias_dropout_add_layer_norm as triton_bdaln

    return triton_bdaln(x, bias, residual, weight, ln_bias, eps, dropout_p)


__all__ = ["attention", "bias_dropout_add_layer_norm", "layer_norm", "reference", "varlen_attention"]
