"""Language model heads: left-to-right (lm) and bidirectional (bilm, ELMo-style)."""
from __future__ import annotations

import torch
from torch import nn

from uer_ds.config import ModelConfig
from uer_ds.models.targets.base import IGNORE_INDEX, TargetResult, classification_result


class LmTarget(nn.Module):
    """hidden -> vocabulary; tgt already holds the next token of each position (shifted by the data)."""

    tied_parameter = "output_layer.weight"

    def __init__(self, cfg: ModelConfig, width: int | None = None) -> None:
        super().__init__()
        self.output_layer = nn.Linear(width or cfg.hidden_size, cfg.vocab_size, bias=cfg.has_lmtarget_bias)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:  # (..., H) -> (..., V)
        return self.output_layer(hidden)

    def forward(self, hidden: torch.Tensor, tgt: torch.Tensor, seg: torch.Tensor) -> TargetResult:
        """hidden: (B, T, H); tgt: (B, T), IGNORE_INDEX where nothing is predicted."""
        picked = tgt != IGNORE_INDEX
        return classification_result(self.logits(hidden[picked]), tgt[picked])


class BilmTarget(LmTarget):
    """The forward half of the hidden state predicts the next token, the backward half the previous
    one, through one shared output layer.  tgt: (B, T, 2) = (next token, previous token)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, width=cfg.hidden_size // 2)

    def forward(self, hidden: torch.Tensor, tgt: torch.Tensor, seg: torch.Tensor) -> TargetResult:
        half = hidden.shape[-1] // 2
        forward = super().forward(hidden[..., :half], tgt[..., 0], seg)
        backward = super().forward(hidden[..., half:], tgt[..., 1], seg)
        return TargetResult(loss=forward.loss + backward.loss, correct=forward.correct + backward.correct,
                            denominator=forward.denominator + backward.denominator)
