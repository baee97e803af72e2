"""Language model heads: left-to-right (lm) and bidirectional (bilm, ELMo-style)."""
from __future__ import annotations

import torch
from torch import nn

from uer_ds.config import ModelConfig
from uer_ds.models.targets.base import Labels, Picked, TargetResult, classification_result, pick


class LmTarget(nn.Module):
    """hidden -> vocabulary; tgt already holds the next token of each position (shifted by the data)."""

    tied_parameter = "output_layer.weight"

    def __init__(self, cfg: ModelConfig, width: int | None = None) -> None:
        super().__init__()
        self.output_layer = nn.Linear(width or cfg.hidden_size, cfg.vocab_size, bias=cfg.has_lmtarget_bias)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:  # (..., H) -> (..., V)
        return self.output_layer(hidden)

    def forward(self, hidden: torch.Tensor, tgt: Labels, seg: torch.Tensor) -> TargetResult:
        """hidden: (B, T, H); tgt: (B, T), IGNORE_INDEX where nothing is predicted (padding), or `Picked`.

        Dense labels predict at every position and ignore the rest in the loss: a language model
        predicts nearly every position, so computing the padding's few rows costs less than the
        host synchronisation that selecting them (boolean indexing) would.
        """
        if isinstance(tgt, Picked):
            rows, labels = pick(hidden, tgt)
            return classification_result(self.logits(rows), labels)
        return classification_result(self.logits(hidden).flatten(0, 1), tgt.flatten())  # (B*T, V), (B*T,)


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
