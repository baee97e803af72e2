"""Recurrent encoders: lstm, gru and their bidirectional forms (hidden_size split between directions).

Padding never reaches the recurrence at a real position, and nothing is packed:
  - the forward direction runs over the right-padded batch as it is: a left-to-right recurrence at
    position t has seen positions 0..t only, so its outputs at the real positions are exact;
  - the backward direction runs over each sequence reversed *within its length* (a gather with
    indices computed from seg on the device), so it starts at the last real token, and its outputs
    are gathered back with the same (self-inverse) indices.
This equals `pack_padded_sequence` at every real position (tests/models/test_encoders_zoo.py checks
it), with no host round trip: `pack_padded_sequence` needs the lengths on the host (a device sync)
and, on CPU, spent 53 % of an LSTM training step in its step-by-step slicing (issue 18's profile).
Outputs at padding positions are zero.  With `padded=False` (the collate function saw no padding)
the masking and gathers are skipped.

The parameters keep nn.LSTM / nn.GRU's names (`rnn.weight_ih_l0`, `rnn.weight_ih_l0_reverse`, ...),
so checkpoints of earlier versions load.  A bidirectional encoder computes layer by layer (each
layer's two directions feed the next), in the forward of its own `rnn` module, so ZeRO-3 gathers the
parameters around that call as it does for any module.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from uer_ds.config import ModelConfig


def reverse_index(seg: torch.Tensor) -> torch.Tensor:
    """seg: (B, T), 0 at (right) padding -> index (B, T) int64 that reverses each row within its length:
    index[b, t] = len_b - 1 - t for t < len_b, t itself on padding.  It is its own inverse."""
    t = torch.arange(seg.shape[1], device=seg.device)  # (T,)
    lengths = (seg > 0).sum(dim=1, keepdim=True)  # (B, 1), on the device: no sync
    return torch.where(t < lengths, lengths - 1 - t, t)


def gather_time(x: torch.Tensor, index: Optional[torch.Tensor]) -> torch.Tensor:
    """x: (B, T, H) -> x[b, index[b, t]] (B, T, H); index None: flip the whole time axis."""
    if index is None:
        return x.flip(1)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


class _WithinLength:
    """forward(x, index) of a bidirectional nn.LSTM / nn.GRU that reverses within lengths (mixin)."""

    def _direction(self, x: torch.Tensor, layer: int, suffix: str) -> torch.Tensor:
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        params = [getattr(self, f"{name}_l{layer}{suffix}") for name in names]
        h0 = x.new_zeros(1, x.shape[0], self.hidden_size)  # (1, B, h)
        if self.mode == "LSTM":
            return torch.lstm(x, (h0, h0), params, True, 1, 0.0, self.training, False, True)[0]
        return torch.gru(x, h0, params, True, 1, 0.0, self.training, False, True)[0]

    def forward(self, x: torch.Tensor, index: Optional[torch.Tensor]) -> torch.Tensor:
        """x: (B, T, E); index: reverse_index(seg), or None without padding -> (B, T, 2h)."""
        for layer in range(self.num_layers):
            if layer:
                x = F.dropout(x, self.dropout, self.training)  # between layers, as nn.LSTM's dropout
            forward = self._direction(x, layer, "")
            backward = gather_time(self._direction(gather_time(x, index), layer, "_reverse"), index)
            x = torch.cat([forward, backward], dim=-1)  # (B, T, 2h)
        return x


class BidirectionalLSTM(_WithinLength, nn.LSTM):
    pass


class BidirectionalGRU(_WithinLength, nn.GRU):
    pass


class RnnEncoder(nn.Module):
    cell: type = nn.LSTM
    bidirectional_cell: type = BidirectionalLSTM
    bidirectional = False  # the hidden state's halves are a forward and a backward direction
    causal = True  # position t sees positions <= t only (serves `lm`)
    recurrent_input = True  # the embedding goes straight into the recurrence (its init: embeddings/parts.py)

    def __init__(self, cfg: ModelConfig, input_size: Optional[int] = None) -> None:
        super().__init__()
        per_direction = cfg.hidden_size // 2 if self.bidirectional else cfg.hidden_size
        cell = self.bidirectional_cell if self.bidirectional else self.cell
        self.rnn = cell(input_size or cfg.emb_size, per_direction, num_layers=cfg.layers_num, batch_first=True,
                        dropout=cfg.dropout if cfg.layers_num > 1 else 0.0, bidirectional=self.bidirectional)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, emb: torch.Tensor, seg: torch.Tensor, padded: Optional[bool] = None) -> torch.Tensor:
        """emb: (B, T, E); seg: (B, T), 0 at right padding -> (B, T, H), zero at padding.

        padded: False when the batch has no padding (skips the masking); True or None: there may be.
        """
        if self.bidirectional:
            out = self.rnn(emb, None if padded is False else reverse_index(seg))
        else:
            out, _ = self.rnn(emb)
        if padded is not False:
            out = out * (seg > 0).unsqueeze(-1).to(out.dtype)
        return self.dropout(out)


class LstmEncoder(RnnEncoder):
    cell = nn.LSTM


class GruEncoder(RnnEncoder):
    cell = nn.GRU


class BilstmEncoder(RnnEncoder):
    bidirectional_cell = BidirectionalLSTM
    bidirectional = True


class BigruEncoder(RnnEncoder):
    bidirectional_cell = BidirectionalGRU
    bidirectional = True
