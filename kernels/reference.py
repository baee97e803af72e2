"""Pure-PyTorch references for the Triton kernels.

These are the CPU path of the model (`kernels: torch`, and `auto` off-GPU), the ground truth the
kernel tests compare against, and the baseline of `uer-ds bench kernels`: one implementation each,
imported by all three.  No Triton import here.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-12,
               residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """y = LayerNorm(x + residual) over the last dimension.  x, residual: (..., N); weight, bias: (N,)."""
    if residual is not None:
        x = x + residual
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              key_padding_mask: Optional[torch.Tensor] = None, causal: bool = False,
              dropout_p: float = 0.0, softmax_scale: Optional[float] = None) -> torch.Tensor:
    """softmax(q k^T * scale + mask) v.

    q: (B, H, Tq, D); k, v: (B, H, Tk, D); key_padding_mask: (B, Tk), True where the key is padding.
    Causal masking aligns the last query with the last key.  A query row whose keys are all masked
    (an all-padding sequence) returns zeros rather than NaN; that is the contract the kernels keep.
    """
    tq, tk = q.shape[2], k.shape[2]
    if key_padding_mask is None and (not causal or tq == tk):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal, scale=softmax_scale)
    allowed, dead = _visible(q, k, key_padding_mask, causal)
    # Let dead rows attend everywhere (finite softmax, no NaN in forward or backward), then zero them.
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed | dead, dropout_p=dropout_p,
                                         scale=softmax_scale)
    return out.masked_fill(dead, 0.0)


def _visible(q: torch.Tensor, k: torch.Tensor, key_padding_mask: Optional[torch.Tensor],
             causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """allowed (B|1, 1, Tq|1, Tk): which key each query may see; dead (B|1, 1, Tq|1, 1): rows seeing none."""
    tq, tk = q.shape[2], k.shape[2]
    allowed = torch.ones(1, 1, 1, tk, dtype=torch.bool, device=q.device)
    if key_padding_mask is not None:
        allowed = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, Tk)
    if causal:
        future = torch.ones(tq, tk, dtype=torch.bool, device=q.device).triu(tk - tq + 1)
        allowed = allowed & ~future  # (B, 1, Tq, Tk)
    dead = ~allowed.any(dim=-1, keepdim=True)  # (B, 1, Tq|1, 1) rows with nothing to attend to
    return allowed, dead


def attention_with_dropout_mask(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor,
                                key_padding_mask: Optional[torch.Tensor] = None, causal: bool = False,
                                dropout_p: float = 0.0, softmax_scale: Optional[float] = None) -> torch.Tensor:
    """`attention` with a given dropout mask instead of a random one (how the kernels' dropout is tested).

    keep: (B, H, Tq, Tk) bool, True where a probability survives; survivors are scaled by 1/(1-dropout_p).
    Explicit softmax, so slower and hungrier than `attention`; for tests on small shapes.
    """
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    allowed, dead = _visible(q, k, key_padding_mask, causal)
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale  # (B, H, Tq, Tk)
    probs = torch.softmax(scores.masked_fill(~(allowed | dead), float("-inf")), dim=-1)
    probs = probs * keep.to(probs.dtype) / (1.0 - dropout_p)
    return torch.matmul(probs, v).masked_fill(dead, 0.0)  # (B, H, Tq, D)
