"""Embedding parts; each maps (src, seg) -> (B, T, emb_size) and the parts are summed."""
from __future__ import annotations

import math

import torch
from torch import nn

from uer_ds.config import ModelConfig

# UER's segment convention: 0 = padding, 1 = first segment, 2 = second segment.
SEGMENTS_NUM = 3


def _check_length(t: int, cfg: ModelConfig) -> None:
    if t > cfg.max_seq_length:
        raise ValueError(f"sequence length {t} exceeds max_seq_length ({cfg.max_seq_length}) of the model config")


# The initial scale of an embedding that a recurrence reads as it is (no LayerNorm between them): PyTorch's
# nn.Embedding default, N(0, 1).  BERT's N(0, 0.02) is meant for an embedding a LayerNorm rescales; read
# by an LSTM as it is, the tokens' vectors (norm ~0.2 at emb_size 128) hardly move its state, which then
# carries how many steps it ran (the length) and little of what it read.  Measured (issue 30): the copy
# task through `uer-ds pretrain --config_path rnn/lstm --target s2s` at 2e-3 for 1500 steps ended at
# s2s_acc 0.28 with one greedy output per source length; with N(0, 1), 0.99.
RECURRENT_INPUT_STD = 1.0


def reads_in_recurrence(cfg: ModelConfig) -> bool:
    """Whether cfg's encoder feeds the embedding straight into a recurrence (its class sets
    `recurrent_input`) with no embedding LayerNorm in between."""
    from uer_ds.models.encoders import ENCODERS

    return cfg.remove_embedding_layernorm and bool(getattr(ENCODERS.get(cfg.encoder), "recurrent_input", False))


class WordEmbedding(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.emb_size)
        if reads_in_recurrence(cfg):
            self.embedding.init_std = RECURRENT_INPUT_STD  # read by uer_ds.models.model.init_module

    def forward(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, E)
        return self.embedding(src)


class PosEmbedding(nn.Module):
    """Learned absolute positions 0..T-1."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.max_seq_length, cfg.emb_size)

    def forward(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        t = src.shape[1]
        _check_length(t, self.cfg)
        positions = torch.arange(t, device=src.device)
        return self.embedding(positions).unsqueeze(0)  # (1, T, E)


class SegEmbedding(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(SEGMENTS_NUM, cfg.emb_size)

    def forward(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        return self.embedding(seg)


class SinusoidalPosEmbedding(nn.Module):
    """Fixed sin/cos positions (Vaswani et al.); no parameters, nothing in the state_dict."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("table", torch.empty(cfg.max_seq_length, cfg.emb_size), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.table.is_meta:
            return
        length, width = self.table.shape
        position = torch.arange(length, dtype=torch.float32).unsqueeze(1)  # (L, 1)
        freq = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
        table = torch.zeros(length, width)
        table[:, 0::2] = torch.sin(position * freq)
        table[:, 1::2] = torch.cos(position * freq[: width // 2])
        self.table.copy_(table)

    def forward(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        t = src.shape[1]
        _check_length(t, self.cfg)
        return self.table[:t].unsqueeze(0)  # (1, T, E)
