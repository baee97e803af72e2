"""The one result type every target returns, and shared helpers."""
from __future__ import annotations

from typing import Mapping, NamedTuple, Optional, Union

import torch
import torch.nn.functional as F

from uer_ds.models.layers.packing import PackedHidden

# Label value for "no prediction here" (unmasked MLM positions, padding): the torch/HF convention,
# so every vocabulary id, 0 included, stays a legal label.
IGNORE_INDEX = -100


class Picked(NamedTuple):
    """The labelled positions of a (B, T) batch, found on the host by the collate function.

    index: (N,) int64, positions in the flattened (B * T) sequence; labels: (N,) int64, the label at
    each.  Rows past the real count are padding (index 0, label IGNORE_INDEX), so N can be a fixed
    bound for a batch shape and shapes stay static.  A head gathers `hidden.flatten(0, 1)[index]`:
    an integer gather, which (unlike boolean indexing) never waits for the device.
    packed_index: (N,) int64, the same positions as rows of the batch's packed tokens (its `Packing`),
    or None; an unpadded encoder's output is gathered with it directly, never unpacked.
    """

    index: torch.Tensor
    labels: torch.Tensor
    packed_index: Optional[torch.Tensor] = None


Labels = Union[torch.Tensor, Picked]


def pick(hidden: Union[torch.Tensor, PackedHidden], labels: Labels) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, H) hidden states (or an unpadded encoder's PackedHidden) and labels -> the labelled rows
    (N, H) and their labels (N,).

    With `Picked` labels this is an index gather (no host synchronisation, static N); packed tokens are
    gathered through `Picked.packed_index` without unpacking.  With dense (B, T) labels, IGNORE_INDEX
    where nothing is predicted, it is boolean indexing, which makes the host wait for the device
    (nonzero): for tests and tools, not the training step.
    """
    if isinstance(hidden, PackedHidden):
        if isinstance(labels, Picked) and labels.packed_index is not None:
            return hidden.tokens.index_select(0, labels.packed_index), labels.labels
        hidden = hidden.padded()
    if isinstance(labels, Picked):
        return hidden.flatten(0, 1).index_select(0, labels.index), labels.labels
    keep = labels != IGNORE_INDEX
    return hidden[keep], labels[keep]


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
