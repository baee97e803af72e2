"""Multi-head self-attention; the attention core (softmax(QK^T)V) is the kernel slot."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from uer_ds.models.layers.dispatch import kernel_ops


class MultiHeadedAttention(nn.Module):
    def __init__(self, hidden_size: int, heads_num: int, dropout: float, kernels: str = "auto") -> None:
        super().__init__()
        self.heads_num = heads_num
        self.head_size = hidden_size // heads_num
        self.dropout = dropout
        self.kernels = kernels
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.output = nn.Linear(hidden_size, hidden_size)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads_num, self.head_size).transpose(1, 2)  # (B, nh, T, hs)

    def forward(self, x: torch.Tensor, key_padding_mask: Optional[torch.Tensor], causal: bool) -> torch.Tensor:
        """x: (B, T, H); key_padding_mask: (B, T) True at padding, or None."""
        b, t, h = x.shape
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        ctx = kernel_ops(self.kernels, x).attention(
            q, k, v, key_padding_mask=key_padding_mask, causal=causal,
            dropout_p=self.dropout if self.training else 0.0, softmax_scale=1.0 / math.sqrt(self.head_size))
        ctx = ctx.transpose(1, 2).reshape(b, t, h)  # (B, T, H)
        return self.output(ctx)
