"""The one result type every target returns, and shared helpers."""
from __future__ import annotations

from typing import Mapping, NamedTuple

import torch
import torch.nn.functional as F

# Label value for "no prediction here" (unmasked MLM positions, padding): the torch/HF convention,
# so every vocabulary id, 0 included, stays a legal label.
IGNORE_INDEX = -100


class TargetResult(NamedTuple):
    """loss: scalar tensor to minimise; correct / denominator: predictions right / made (tensors).

    A model with several targets returns the sum of their losses and counts, with each target's own
    result in `parts` (empty for a single target).  A NamedTuple, so that wrappers that walk module
    outputs for tensors (DeepSpeed ZeRO-3's backward hooks) see through it.
    """

    loss: torch.Tensor
    correct: torch.Tensor
    denominator: torch.Tensor
    parts: Mapping[str, "TargetResult"] = {}  # never mutated

    @property
    def accuracy(self) -> float:
        return float(self.correct) / max(float(self.denominator), 1.0)

    @staticmethod
    def combine(parts: Mapping[str, "TargetResult"]) -> "TargetResult":
        if len(parts) == 1:
            return next(iter(parts.values()))
        results = list(parts.values())
        return TargetResult(loss=sum(r.loss for r in results), correct=sum(r.correct for r in results),
                            denominator=sum(r.denominator for r in results), parts=dict(parts))


def classification_result(logits: torch.Tensor, labels: torch.Tensor) -> TargetResult:
    """Mean cross-entropy over rows whose label is not IGNORE_INDEX.  logits: (N, C); labels: (N,).

    With no labelled row the loss is an exact zero that still depends on every input, so all ranks
    run the same backward graph.
    """
    keep = labels != IGNORE_INDEX
    count = keep.sum()
    loss_sum = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
    loss = loss_sum / count.clamp(min=1)
    correct = ((logits.argmax(dim=-1) == labels) & keep).sum()
    return TargetResult(loss=loss, correct=correct, denominator=count)
