"""Composite embeddings: the sum of the configured parts, then layer norm and dropout."""
from __future__ import annotations

from typing import Union

import torch
from torch import nn

from uer_ds.config import ModelConfig
from uer_ds.models.layers import LayerNorm


class Embedding(nn.Module):
    """sum(parts) -> LayerNorm (unless remove_embedding_layernorm) -> dropout.  (B, T) -> (B, T, E)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        from uer_ds.models.embeddings import EMBEDDINGS

        for name in cfg.embedding:
            self.add_module(name, EMBEDDINGS[name](cfg))
        self.names = tuple(cfg.embedding)
        self.layer_norm = None if cfg.remove_embedding_layernorm else \
            LayerNorm(cfg.emb_size, cfg.layernorm_eps, cfg.kernels)
        self.dropout = nn.Dropout(cfg.dropout)

    def word_embedding(self) -> nn.Embedding:
        return self.word.embedding

    def forward(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        emb = self.word(src, seg)
        for name in self.names:
            if name != "word":
                emb = emb + getattr(self, name)(src, seg)
        if self.layer_norm is not None:
            emb = self.layer_norm(emb)
        return self.dropout(emb)


Pair = tuple[torch.Tensor, torch.Tensor]


class DualEmbedding(nn.Module):
    """Siamese models: one embedding per stream (shared when tie_weights); takes and returns pairs."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embedding_0 = Embedding(cfg.stream_0)
        self.embedding_1 = self.embedding_0 if cfg.tie_weights else Embedding(cfg.stream_1)

    def word_embedding(self) -> nn.Embedding:
        return self.embedding_0.word_embedding()

    def forward(self, src: Union[Pair, list], seg: Union[Pair, list]) -> Pair:
        return self.embedding_0(src[0], seg[0]), self.embedding_1(src[1], seg[1])
