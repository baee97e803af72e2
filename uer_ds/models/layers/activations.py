"""Activation registry (UER-py's names)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from uer_ds import registry


def gelu_fast(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of GELU (GPT-2's `gelu_new`)."""
    return F.gelu(x, approximate="tanh")


def linear(x: torch.Tensor) -> torch.Tensor:
    return x


# name -> function; the names live in uer_ds.registry.ACTIVATIONS
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = registry.implementations(registry.ACTIVATIONS)
