"""Masked language model head (BERT's cls.predictions)."""
from __future__ import annotations

from typing import Union

import torch
from torch import nn

from uer_ds.config import ModelConfig
from uer_ds.models.layers import ACTIVATIONS, LayerNorm
from uer_ds.models.layers.packing import PackedHidden
from uer_ds.models.targets.base import Labels, TargetResult, classification_result, pick


class MlmTarget(nn.Module):
    """dense -> act -> LayerNorm -> vocabulary projection, on masked positions only.

    With factorized embeddings (ALBERT) the head narrows to emb_size before the projection, so the
    projection can be tied to the word embedding.
    """

    tied_parameter = "linear_2.weight"
    label_kind = "picked"  # its labels come as Picked rows (the multi-task schedule's "no labels": one row)
    # an unpadded encoder's PackedHidden is welcome: the masked rows are gathered from the packed
    # tokens directly (Picked.packed_index), never unpacked to (B, T, H)
    takes_packed = True

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        width = cfg.emb_size if cfg.factorized_embedding_parameterization else cfg.hidden_size
        self.linear_1 = nn.Linear(cfg.hidden_size, width)
        self.act = ACTIVATIONS[cfg.hidden_act]
        self.layer_norm = LayerNorm(width, cfg.layernorm_eps, cfg.kernels)
        self.linear_2 = nn.Linear(width, cfg.vocab_size)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:  # (..., H) -> (..., V)
        return self.linear_2(self.layer_norm(self.act(self.linear_1(hidden))))

    def forward(self, hidden: Union[torch.Tensor, PackedHidden], tgt: Labels, seg: torch.Tensor) -> TargetResult:
        """hidden: (B, T, H), or the packed tokens of an unpadded encoder (PackedHidden); tgt: the masked
        positions as `Picked` (what collate gives: no host sync), or (B, T) token ids at masked positions
        with IGNORE_INDEX elsewhere."""
        rows, labels = pick(hidden, tgt)  # (N, H), (N,)
        return classification_result(self.logits(rows), labels)  # (N, V), (N,)
