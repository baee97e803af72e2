"""LayerNorm slot: same parameters and state_dict (weight, bias) whichever kernel runs it."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from uer_ds.models.layers.dispatch import kernel_ops, prepare


class LayerNorm(nn.Module):
    """y = LN(x + residual); the residual add is part of the op so a fused kernel can take both."""

    def __init__(self, hidden_size: int, eps: float = 1e-6, kernels: str = "auto") -> None:
        super().__init__()
        self.eps = eps
        self.kernels = kernels
        prepare(kernels)
        self.weight = nn.Parameter(torch.empty(hidden_size))
        self.bias = nn.Parameter(torch.empty(hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        return kernel_ops(self.kernels, x).layer_norm(x, self.weight, self.bias, self.eps, residual=residual)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}, kernels={self.kernels}"
