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


def bias_dropout_add_layer_norm(x: torch.Tensor, bias: Optional[torch.Tensor], residual: Optional[torch.Tensor],
                                weight: Optional[torch.Tensor], ln_bias: Optional[torch.Tensor], eps: float = 1e-12,
                                dropout_p: float = 0.0) -> torch.Tensor:
    """y = LayerNorm(dropout(x + bias) + residual) over the last dimension (a post-LN sublayer's closing ops).

    x, residual: (..., N); bias (the sublayer's linear bias), weight, ln_bias: (N,); bias and residual may
    be None.  Dropout is F.dropout's (survivors scaled by 1/(1-p)), applied when dropout_p > 0.
    """
    if bias is not None:
        x = x + bias
    if dropout_p > 0:
        x = F.dropout(x, p=dropout_p)
    return layer_norm(x, weight, ln_bias, eps, residual=residual)


def bias_dropout_add_layer_norm_with_keep_mask(x: torch.Tensor, bias: Optional[torch.Tensor],
                                               residual: Optional[torch.Tensor], weight: Optional[torch.Tensor],
                                               ln_bias: Optional[torch.Tensor], eps: float, dropout_p: float,
                                               keep: torch.Tensor) -> torch.Tensor:
    """`bias_dropout_add_layer_norm` with a given dropout mask (keep: x's shape, bool), how the kernel's
    dropout is tested."""
    if bias is not None:
        x = x + bias
    x = x * keep.to(x.dtype) / (1.0 - dropout_p)
    return layer_norm(x, weight, ln_bias, eps, residual=residual)


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                     causal: bool = False, dropout_p: float = 0.0, softmax_scale: Optional[float] = None
                     ) -> torch.Tensor:
    """Attention within each of B packed sequences: softmax(q k^T * scale) v per sequence, no token
    seeing another sequence's.

    q, k, v: (N, H, D), the sequences' tokens one after another; cu_seqlens: (B + 1,) int32, sequence b
    holds tokens [cu_seqlens[b], cu_seqlens[b + 1]); max_seqlen: the longest sequence (a host int, so
    no value is read back from the device).  causal: token i of a sequence sees tokens <= i of it.
    Returns (N, H, D).  Computed as `attention` on the sequences padded to max_seqlen (gathered and
    scattered by index, no host read), so an (N, ...) batch costs B x max_seqlen^2 per head.
    """
    return _varlen_padded(q, k, v, cu_seqlens, max_seqlen,
                          lambda qp, kp, vp, pad: attention(qp, kp, vp, key_padding_mask=pad, causal=causal,
                                                            dropout_p=dropout_p, softmax_scale=softmax_scale))


def varlen_attention_with_dropout_mask(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                                       max_seqlen: int, keep: torch.Tensor, causal: bool = False,
                                       dropout_p: float = 0.0, softmax_scale: Optional[float] = None) -> torch.Tensor:
    """`varlen_attention` with a given dropout mask: keep (B, H, max_seqlen, max_seqlen) bool, where
    keep[b, h, i, j] says whether sequence b's probability of query i on key j survives (tests)."""
    return _varlen_padded(q, k, v, cu_seqlens, max_seqlen,
                          lambda qp, kp, vp, pad: attention_with_dropout_mask(
                              qp, kp, vp, keep, key_padding_mask=pad, causal=causal, dropout_p=dropout_p,
                              softmax_scale=softmax_scale))


def _varlen_padded(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                   padded_attention) -> torch.Tensor:
    """Scatter the packed (N, H, D) tensors into (B, H, max_seqlen, D), run `padded_attention(q, k, v,
    key_padding_mask)` and gather the real rows back."""
    n, h, d = q.shape
    b = cu_seqlens.numel() - 1
    starts = cu_seqlens.long()
    token = torch.arange(n, device=q.device)
    seq = torch.searchsorted(starts[1:], token, right=True)  # (N,) which sequence each token is in
    slot = seq * max_seqlen + (token - starts[seq])  # (N,) its row in the padded (B * L) layout

    def to_padded(t: torch.Tensor) -> torch.Tensor:
        out = t.new_zeros(b * max_seqlen, h, d).index_copy(0, slot, t)
        return out.view(b, max_seqlen, h, d).transpose(1, 2)  # (B, H, L, D)

    lengths = starts[1:] - starts[:-1]  # (B,)
    pad = torch.arange(max_seqlen, device=q.device)[None, :] >= lengths[:, None]  # (B, L), True at padding
    out = padded_attention(to_padded(q), to_padded(k), to_padded(v), pad)  # (B, H, L, D)
    return out.transpose(1, 2).reshape(b * max_seqlen, h, d).index_select(0, slot)  # (N, H, D)
