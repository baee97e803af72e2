"""Subword (character) encoders: each word's characters -> one vector, added to its word embedding
(UER-py's --subword_type char with --subencoder avg|lstm|gru|cnn, removed from UER-py in its commit
"better code style").

Input: sub (B, T, C) int64 character ids per word (uer_ds/tokenizers/subword.py), negative where a
word has no more characters (and on padding positions); output (B, T, emb_size), zero for a position
without characters.  Characters are left-aligned in their row, so a left-to-right recurrence or a
causal convolution never mixes padding into a real character.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from uer_ds.config import ModelConfig
from uer_ds.registry import SUBENCODERS, locate


def masked_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """x: (N, C, E), valid: (N, C) bool -> mean over the valid characters (N, E); 0 where none is."""
    weights = valid.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class AvgSubencoder(nn.Module):
    """The mean of the character embeddings."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()

    def forward(self, chars: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return masked_mean(chars, valid)


class LstmSubencoder(nn.Module):
    """sub_layers_num recurrent layers (emb_size wide) over the characters; the mean of their outputs."""

    cell = nn.LSTM

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.rnn = self.cell(cfg.emb_size, cfg.emb_size, num_layers=cfg.sub_layers_num, batch_first=True,
                             dropout=cfg.dropout if cfg.sub_layers_num > 1 else 0.0)

    def forward(self, chars: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(chars)  # (N, C, E)
        return masked_mean(out, valid)


class GruSubencoder(LstmSubencoder):
    cell = nn.GRU


class CnnSubencoder(nn.Module):
    """A convolution of width kernel_size over the characters (left-padded), ReLU, max over them."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.kernel_size = cfg.kernel_size
        self.conv = nn.Conv1d(cfg.emb_size, cfg.emb_size, cfg.kernel_size)

    def forward(self, chars: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(F.pad(chars.transpose(1, 2), (self.kernel_size - 1, 0))))  # (N, E, C)
        x = x.masked_fill(~valid.unsqueeze(1), 0.0)  # ReLU outputs are >= 0: 0 never beats a real maximum
        return x.max(dim=-1).values  # (N, E)




class SubwordEmbedding(nn.Module):
    """sub (B, T, C) -> (B, T, emb_size): character embeddings through the configured subencoder."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(cfg.sub_vocab_size, cfg.emb_size)
        self.subencoder = locate(SUBENCODERS[cfg.subencoder])(cfg)

    def forward(self, sub: torch.Tensor) -> torch.Tensor:
        b, t, c = sub.shape
        valid = sub >= 0  # (B, T, C)
        chars = self.embedding(sub.clamp(min=0)).view(b * t, c, -1)  # (B*T, C, E)
        return self.subencoder(chars, valid.view(b * t, c)).view(b, t, -1)
