"""Multi-head self-attention; the attention core (softmax(QK^T)V) is the kernel slot."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from uer_ds.models.layers.dispatch import kernel_ops, prepare
from uer_ds.models.layers.packing import Packing


class MultiHeadedAttention(nn.Module):
    """heads_num heads of head_size each (default hidden_size // heads_num).  A width-pruned model has fewer
    heads of the same size, so the heads together (heads_num * head_size = the inner width) may be narrower
    than hidden_size: query/key/value map H -> inner width, output maps it back to H.  Every attention path
    (SDPA, varlen, the Triton kernels, which take the head sizes in uer_ds.kernels' HEAD_DIMS) sees
    (.., nh, .., hs) tensors and never the inner width."""

    def __init__(self, hidden_size: int, heads_num: int, dropout: float, kernels: str = "auto",
                 head_size: int = 0) -> None:
        super().__init__()
        self.heads_num = heads_num
        self.head_size = head_size or hidden_size // heads_num
        inner = heads_num * self.head_size
        self.dropout = dropout
        self.kernels = kernels
        prepare(kernels)
        self.query = nn.Linear(hidden_size, inner)
        self.key = nn.Linear(hidden_size, inner)
        self.value = nn.Linear(hidden_size, inner)
        self.output = nn.Linear(inner, hidden_size)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads_num, self.head_size).transpose(1, 2)  # (B, nh, T, hs)

    def forward(self, x: torch.Tensor, key_padding_mask: Optional[torch.Tensor], causal: bool,
                kv_cache: Optional["KVCache"] = None, bias: bool = True) -> torch.Tensor:
        """x: (B, T, H); key_padding_mask: (B, T) True at padding, or None.

        kv_cache (inference only): the keys and values of earlier calls; this call's are appended and the
        queries attend over all of them (causal aligns the last query with the last key).
        bias: False leaves the output projection's bias out (the caller adds it in a fused op).
        """
        b, t, _ = x.shape
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)  # (B, nh, T_past + T, hs)
        ctx = kernel_ops(self.kernels, x).attention(
            q, k, v, key_padding_mask=key_padding_mask, causal=causal,
            dropout_p=self.dropout if self.training else 0.0, softmax_scale=1.0 / math.sqrt(self.head_size))
        ctx = ctx.transpose(1, 2).reshape(b, t, self.heads_num * self.head_size)  # (B, T, nh * hs)
        return self._project(ctx, bias)

    def forward_packed(self, x: torch.Tensor, packing: Packing, causal: bool, bias: bool = True) -> torch.Tensor:
        """x: (N, H), the real tokens of a batch packed by `packing` -> (N, H); each token attends to its
        own sequence's tokens (varlen attention over packing.cu_seqlens).  bias: as in `forward`."""
        n = x.shape[0]
        q, k, v = (proj(x).view(n, self.heads_num, self.head_size) for proj in (self.query, self.key, self.value))
        ctx = kernel_ops(self.kernels, x).varlen_attention(
            q, k, v, packing.cu_seqlens, packing.max_seqlen, causal=causal,
            dropout_p=self.dropout if self.training else 0.0, softmax_scale=1.0 / math.sqrt(self.head_size))
        return self._project(ctx.reshape(n, self.heads_num * self.head_size), bias)  # (N, nh, hs) -> (N, H)

    def _project(self, ctx: torch.Tensor, bias: bool) -> torch.Tensor:
        return self.output(ctx) if bias else F.linear(ctx, self.output.weight)


class KVCache:
    """One layer's keys and values of the positions already processed, for incremental decoding.

    Storage grows by doubling, so appending one step copies O(1) positions amortised and each new
    token costs one step through the network.  Inference only (appends write in place).
    """

    def __init__(self) -> None:
        self.k: Optional[torch.Tensor] = None  # (B, nh, capacity, hs)
        self.v: Optional[torch.Tensor] = None
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k, v: (B, nh, T, hs) -> every key and value so far, (B, nh, length + T, hs)."""
        need = self.length + k.shape[2]
        if self.k is None or need > self.k.shape[2]:
            capacity = max(need, 2 * (0 if self.k is None else self.k.shape[2]))
            grown_k = k.new_empty(*k.shape[:2], capacity, k.shape[3])
            grown_v = v.new_empty(*v.shape[:2], capacity, v.shape[3])
            if self.k is not None:
                grown_k[:, :, : self.length] = self.k[:, :, : self.length]
                grown_v[:, :, : self.length] = self.v[:, :, : self.length]
            self.k, self.v = grown_k, grown_v
        self.k[:, :, self.length: need] = k
        self.v[:, :, self.length: need] = v
        self.length = need
        return self.k[:, :, :need], self.v[:, :, :need]
