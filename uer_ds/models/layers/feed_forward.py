"""Position-wise feed-forward block."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from uer_ds.models.layers.activations import ACTIVATIONS


class PositionwiseFeedForward(nn.Module):
    def __init__(self, hidden_size: int, feedforward_size: int, hidden_act: str) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(hidden_size, feedforward_size)
        self.linear_2 = nn.Linear(feedforward_size, hidden_size)
        self.act = ACTIVATIONS[hidden_act]

    def forward(self, x: torch.Tensor, bias: bool = True) -> torch.Tensor:  # (..., H) -> (..., H)
        """bias: False leaves linear_2's bias out (the caller adds it in a fused op)."""
        h = self.act(self.linear_1(x))
        return self.linear_2(h) if bias else F.linear(h, self.linear_2.weight)
