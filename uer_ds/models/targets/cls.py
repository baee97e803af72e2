"""Sentence classification head used as a pre-training target (UER-py's `cls`)."""
from __future__ import annotations

import torch
from torch import nn

from uer_ds.config import ModelConfig
from uer_ds.models.targets.base import TargetResult, classification_result


def pool(hidden: torch.Tensor, seg: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, T, H) -> (B, H) over the non-padding positions (seg > 0)."""
    if pooling == "first":
        return hidden[:, 0]
    valid = (seg > 0).unsqueeze(-1)  # (B, T, 1)
    if pooling == "mean":
        return (hidden * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1)
    if pooling == "max":
        return hidden.masked_fill(~valid, torch.finfo(hidden.dtype).min).max(dim=1).values
    if pooling == "last":
        last = ((seg > 0).sum(dim=1) - 1).clamp(min=0)  # (B,)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"pooling has value '{pooling}': must be one of first, last, mean, max")


class ClsTarget(nn.Module):
    label_kind = "sequence"  # one label per row (B,)

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.pooling = cfg.pooling
        self.linear_1 = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.linear_2 = nn.Linear(cfg.hidden_size, cfg.labels_num)

    def logits(self, hidden: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:  # -> (B, labels_num)
        return self.linear_2(torch.tanh(self.linear_1(pool(hidden, seg, self.pooling))))

    def forward(self, hidden: torch.Tensor, tgt: torch.Tensor, seg: torch.Tensor) -> TargetResult:
        """tgt: (B,) class ids."""
        return classification_result(self.logits(hidden, seg), tgt)
