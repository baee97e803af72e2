"""Activation registry (UER-py's names)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def gelu_fast(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of GELU (GPT-2's `gelu_new`)."""
    return F.gelu(x, approximate="tanh")


def linear(x: torch.Tensor) -> torch.Tensor:
    return x


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_fast": gelu_fast,
    "relu": F.relu,
    "silu": F.silu,
    "tanh": torch.tanh,
    "linear": linear,
}
