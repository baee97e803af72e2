"""Siamese encoder: one encoder per stream (shared when tie_weights); takes and returns pairs."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from uer_ds.config import ModelConfig


class DualEncoder(nn.Module):

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        from uer_ds.models.encoders import ENCODERS

        self.encoder_0 = ENCODERS[cfg.stream_0.encoder](cfg.stream_0)
        self.encoder_1 = self.encoder_0 if cfg.tie_weights else ENCODERS[cfg.stream_1.encoder](cfg.stream_1)

    def forward(self, emb, seg, padded: Optional[bool] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairs in, pairs out; `padded` describes both streams' batches (None: mask)."""
        return self.encoder_0(emb[0], seg[0], padded=padded), self.encoder_1(emb[1], seg[1], padded=padded)
