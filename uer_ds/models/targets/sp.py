"""Sentence prediction head: NSP (BERT) and SOP (ALBERT) are this head on different pairs."""
from __future__ import annotations

import torch
from torch import nn

from uer_ds.config import ModelConfig
from uer_ds.models.targets.base import TargetResult, classification_result


class SpTarget(nn.Module):
    """tanh(dense(h[CLS])) -> 2 classes (BERT's pooler + seq_relationship)."""

    label_kind = "sequence"  # one label per row (B,)

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.linear_2 = nn.Linear(cfg.hidden_size, 2)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:  # (B, T, H) -> (B, 2)
        return self.linear_2(torch.tanh(self.linear_1(hidden[:, 0])))

    def forward(self, hidden: torch.Tensor, tgt: torch.Tensor, seg: torch.Tensor) -> TargetResult:
        """tgt: (B,) 0 = the second segment follows / is in order, 1 = random / swapped."""
        return classification_result(self.logits(hidden), tgt)
