"""Position-wise feed-forward block."""
from __future__ import annotations

import torch
from torch import nn

from uer_ds.models.layers.activations import ACTIVATIONS


class PositionwiseFeedForward(nn.Module):
    def __init__(self, hidden_size: int, feedforward_size: int, hidden_act: str) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(hidden_size, feedforward_size)
        self.linear_2 = nn.Linear(feedforward_size, hidden_size)
        self.act = ACTIVATIONS[hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, H) -> (B, T, H)
        return self.linear_2(self.act(self.linear_1(x)))
