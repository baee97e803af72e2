"""Convolutional encoders: cnn (stacked causal 1-D convolutions), rcnn (an LSTM whose outputs feed
the convolutions) and crnn (convolutions whose outputs feed an LSTM), as UER-py's CnnEncoder,
RcnnEncoder and CrnnEncoder (removed from UER-py in its commit "better code style") computed them.

Every convolution is causal (padded on the left by kernel_size - 1), and so is the LSTM, so position
t sees positions <= t only: these encoders serve language modelling, and right padding never reaches
a real position (the outputs there are exact with or without padding; they are zero at padding).
Unlike UER-py's CnnEncoder, each convolution is followed by the `hidden_act` activation (UER-py's
stack was linear, i.e. one wide convolution in effect).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from uer_ds.config import ModelConfig
from uer_ds.models.layers import ACTIVATIONS


def zero_padding(x: torch.Tensor, seg: torch.Tensor, padded: Optional[bool]) -> torch.Tensor:
    """x: (B, T, H) with zeros where seg is 0 (skipped when padded is False: there is none)."""
    if padded is False:
        return x
    return x * (seg > 0).unsqueeze(-1).to(x.dtype)


class CausalConvStack(nn.Module):
    """layers_num convolutions of width kernel_size over time, each followed by the activation.
    (B, T, in_size) -> (B, T, out_size); output t depends on inputs <= t only."""

    def __init__(self, in_size: int, out_size: int, kernel_size: int, layers_num: int, act: str) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.convs = nn.ModuleList(nn.Conv1d(in_size if i == 0 else out_size, out_size, kernel_size)
                                   for i in range(layers_num))
        self.act = ACTIVATIONS[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # (B, C, T)
        for conv in self.convs:
            x = self.act(conv(F.pad(x, (self.kernel_size - 1, 0))))  # left padding only: causal
        return x.transpose(1, 2)  # (B, T, C)


class CnnEncoder(nn.Module):
    """emb (B, T, E) -> layers_num causal convolutions -> (B, T, H)."""


    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.conv = CausalConvStack(cfg.emb_size, cfg.hidden_size, cfg.kernel_size, cfg.layers_num, cfg.hidden_act)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, emb: torch.Tensor, seg: torch.Tensor, padded: Optional[bool] = None) -> torch.Tensor:
        """emb: (B, T, E); seg: (B, T), 0 at right padding -> (B, T, H), zero at padding."""
        return self.dropout(zero_padding(self.conv(emb), seg, padded))


def _lstm(cfg: ModelConfig, input_size: int) -> nn.LSTM:
    return nn.LSTM(input_size, cfg.hidden_size, num_layers=cfg.layers_num, batch_first=True,
                   dropout=cfg.dropout if cfg.layers_num > 1 else 0.0)


class RcnnEncoder(nn.Module):
    """emb -> LSTM (layers_num layers) -> dropout -> layers_num causal convolutions -> (B, T, H).

    The LSTM runs over the right-padded batch unpacked: left to right, its outputs at the real
    positions never depend on the padding after them.
    """

    causal = True
    recurrent_input = True  # the embedding goes straight into the LSTM (its init: embeddings/parts.py)

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.rnn = _lstm(cfg, cfg.emb_size)
        self.conv = CausalConvStack(cfg.hidden_size, cfg.hidden_size, cfg.kernel_size, cfg.layers_num, cfg.hidden_act)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, emb: torch.Tensor, seg: torch.Tensor, padded: Optional[bool] = None) -> torch.Tensor:
        hidden, _ = self.rnn(emb)  # (B, T, H)
        return self.dropout(zero_padding(self.conv(self.dropout(hidden)), seg, padded))


class CrnnEncoder(nn.Module):
    """emb -> layers_num causal convolutions -> LSTM (layers_num layers) -> dropout -> (B, T, H)."""


    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.conv = CausalConvStack(cfg.emb_size, cfg.hidden_size, cfg.kernel_size, cfg.layers_num, cfg.hidden_act)
        self.rnn = _lstm(cfg, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, emb: torch.Tensor, seg: torch.Tensor, padded: Optional[bool] = None) -> torch.Tensor:
        hidden, _ = self.rnn(self.conv(emb))  # (B, T, H)
        return self.dropout(zero_padding(hidden, seg, padded))
