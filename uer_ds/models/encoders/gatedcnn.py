"""Gated convolutional encoder (Dauphin et al., 2017), causal so it serves language modelling."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from uer_ds.config import ModelConfig


class GatedConv(nn.Module):
    """h = (x * W + b) * sigmoid(x * V + c), convolving over time with left padding only (causal)."""

    def __init__(self, in_size: int, out_size: int, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(in_size, out_size, kernel_size)
        self.gate = nn.Conv1d(in_size, out_size, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, T) -> (B, C_out, T)
        x = F.pad(x, (self.kernel_size - 1, 0))
        return self.conv(x) * torch.sigmoid(self.gate(x))


class GatedcnnEncoder(nn.Module):
    """A first gated conv (emb -> hidden), then residual blocks of `block_size` gated convs."""


    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.first = GatedConv(cfg.emb_size, cfg.hidden_size, cfg.kernel_size)
        blocks = (cfg.layers_num - 1) // cfg.block_size
        self.blocks = nn.ModuleList(
            nn.ModuleList(GatedConv(cfg.hidden_size, cfg.hidden_size, cfg.kernel_size) for _ in range(cfg.block_size))
            for _ in range(blocks))
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, emb: torch.Tensor, seg: torch.Tensor, padded: Optional[bool] = None) -> torch.Tensor:
        """emb: (B, T, E) -> (B, T, H); position t sees positions <= t only.  padded: unused (the
        convolutions are causal, so right padding never reaches a real position; outputs there are 0)."""
        pad = (seg == 0).unsqueeze(1)  # (B, 1, T)
        x = self.first(emb.transpose(1, 2)).masked_fill(pad, 0.0)  # (B, H, T)
        for block in self.blocks:
            residual = x
            for conv in block:
                x = conv(x).masked_fill(pad, 0.0)
            x = x + residual
        return self.dropout(x.transpose(1, 2))  # (B, T, H)
