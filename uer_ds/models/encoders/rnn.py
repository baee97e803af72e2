"""Recurrent encoders: lstm, gru and their bidirectional forms (hidden_size split between directions)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from uer_ds.config import ModelConfig


class RnnEncoder(nn.Module):
    cell = nn.LSTM
    bidirectional = False

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        per_direction = cfg.hidden_size // 2 if self.bidirectional else cfg.hidden_size
        self.rnn = self.cell(cfg.emb_size, per_direction, num_layers=cfg.layers_num, batch_first=True,
                             dropout=cfg.dropout if cfg.layers_num > 1 else 0.0, bidirectional=self.bidirectional)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, emb: torch.Tensor, seg: torch.Tensor, padded: Optional[bool] = None) -> torch.Tensor:
        """emb: (B, T, E); seg: (B, T), 0 at padding -> (B, T, H).

        Sequences are packed by their lengths, so padding never reaches the recurrence (the
        backward direction of a bidirectional encoder would otherwise start in the padding);
        outputs at padding positions are zero.
        """
        t = emb.shape[1]
        if padded is False:  # the collate function saw no padding
            out, _ = self.rnn(emb)
            return self.dropout(out)
        lengths = (seg > 0).sum(dim=1)
        if bool((lengths == t).all()):
            out, _ = self.rnn(emb)
        else:
            packed = pack_padded_sequence(emb, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
            out, _ = self.rnn(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=t)
        return self.dropout(out)


class LstmEncoder(RnnEncoder):
    cell = nn.LSTM


class GruEncoder(RnnEncoder):
    cell = nn.GRU


class BilstmEncoder(RnnEncoder):
    cell = nn.LSTM
    bidirectional = True


class BigruEncoder(RnnEncoder):
    cell = nn.GRU
    bidirectional = True
