"""The heads of ERNIE 2.0's pre-training tasks (Sun et al., 2020, arXiv 1907.12412, section "Pre-training
Tasks"); their labels are built by the data processors of the same names (uer_ds/data/ernie.py).

  target             head                                           labels                    classes
  capitalization     per token: dense -> act -> linear              (B, T), -100 = none       2
  token_document     per token: dense -> act -> linear              (B, T), -100 = none       2
  sentence_reorder   [CLS]: dense -> tanh -> linear                 (B,)                      sum k!, k = 1..M
  sentence_distance  [CLS]: dense -> tanh -> linear                 (B,)                      3
  discourse          [CLS]: dense -> tanh -> linear                 (B,)                      the markers
  ir_relevance       [CLS]: dense -> tanh -> linear                 (B,)                      3

Token heads score every position and leave unlabelled ones out of the mean loss (IGNORE_INDEX), so the
step never selects rows by a device mask (no host synchronisation); sentence heads read position 0 as
BERT's pooler does.  `label_kind` tells the multi-task schedule what "no labels" looks like for a head
whose task is not the batch's (uer_ds/data/schedule.py): every head runs in every step, on no labels
when its task is not the step's, so each step has the same graph (an exact zero loss and gradient).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from uer_ds.config import ModelConfig
from uer_ds.models.layers import ACTIVATIONS
from uer_ds.models.targets.base import TargetResult, classification_result


class TokenBinaryTarget(nn.Module):
    """Per position: linear_2(act(linear_1(h))) -> 2 logits.  hidden (B, T, H); tgt (B, T) int64 in {0, 1}
    or IGNORE_INDEX."""

    label_kind = "token"

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.act = ACTIVATIONS[cfg.hidden_act]
        self.linear_2 = nn.Linear(cfg.hidden_size, 2)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:  # (..., H) -> (..., 2)
        return self.linear_2(self.act(self.linear_1(hidden)))

    def forward(self, hidden: torch.Tensor, tgt: torch.Tensor, seg: torch.Tensor) -> TargetResult:
        return classification_result(self.logits(hidden).flatten(0, 1), tgt.flatten())  # (B*T, 2), (B*T,)


class CapitalizationTarget(TokenBinaryTarget):
    """The paper's "Capitalization Prediction Task": 1 = the token's word was capitalised in the original
    text (labels on a word's first token; ernie.capitalization_labels)."""


class TokenDocumentTarget(TokenBinaryTarget):
    """The paper's "Token-Document Relation Prediction Task": 1 = the token's word also occurs elsewhere in
    its document (labels on a word's first token; ernie.token_document_labels)."""


class SentenceTarget(nn.Module):
    """tanh(linear_1(h[CLS])) -> linear_2 -> `classes(cfg)` logits.  hidden (B, T, H); tgt (B,) int64."""

    label_kind = "sequence"

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.linear_2 = nn.Linear(cfg.hidden_size, self.classes(cfg))

    @staticmethod
    def classes(cfg: ModelConfig) -> int:
        raise NotImplementedError

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:  # (B, T, H) -> (B, classes)
        return self.linear_2(torch.tanh(self.linear_1(hidden[:, 0])))

    def forward(self, hidden: torch.Tensor, tgt: torch.Tensor, seg: torch.Tensor) -> TargetResult:
        return classification_result(self.logits(hidden), tgt)


class SentenceReorderTarget(SentenceTarget):
    """The paper's "Sentence Reordering Task": which of the sum_{k=1..M} k! orders of 1..M segments was shown
    (M = sentence_reorder_segments; ernie.permutation_class)."""

    @staticmethod
    def classes(cfg: ModelConfig) -> int:
        return sum(math.factorial(k) for k in range(1, cfg.sentence_reorder_segments + 1))


class SentenceDistanceTarget(SentenceTarget):
    """The paper's "Sentence Distance Task": 0 adjacent, 1 same document not adjacent, 2 other document."""

    @staticmethod
    def classes(cfg: ModelConfig) -> int:
        return 3


class DiscourseTarget(SentenceTarget):
    """The paper's "Discourse Relation Task": the marker that joined the pair (discourse_labels_num classes)."""

    @staticmethod
    def classes(cfg: ModelConfig) -> int:
        return cfg.discourse_labels_num


class IrRelevanceTarget(SentenceTarget):
    """The paper's "IR Relevance Task": 0 strong relevance, 1 weak, 2 irrelevant (query [SEP] title)."""

    @staticmethod
    def classes(cfg: ModelConfig) -> int:
        return 3


ERNIE_TARGETS = {"capitalization": CapitalizationTarget, "token_document": TokenDocumentTarget,
                 "sentence_reorder": SentenceReorderTarget, "sentence_distance": SentenceDistanceTarget,
                 "discourse": DiscourseTarget, "ir_relevance": IrRelevanceTarget}
