"""Composite embeddings: the sum of the configured parts, then layer norm and dropout."""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from uer_ds.config import ModelConfig
from uer_ds.models.layers import LayerNorm


class Embedding(nn.Module):
    """sum(parts) -> LayerNorm (unless remove_embedding_layernorm) -> dropout.  (B, T) -> (B, T, E).

    With subword features (subword_type 'char') each word's character encoding is one more part of the
    sum; its input `sub` (B, T, C) comes with the batch (uer_ds/tokenizers/subword.py).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        from uer_ds.models.embeddings import EMBEDDINGS

        for name in cfg.embedding:
            self.add_module(name, EMBEDDINGS[name](cfg))
        self.names = tuple(cfg.embedding)
        self.subword = None
        if cfg.subword_type != "none":
            from uer_ds.models.embeddings.subword import SubwordEmbedding

            self.subword = SubwordEmbedding(cfg)
        self.layer_norm = None if cfg.remove_embedding_layernorm else \
            LayerNorm(cfg.emb_size, cfg.layernorm_eps, cfg.kernels)
        self.dropout = nn.Dropout(cfg.dropout)

    def word_embedding(self) -> nn.Embedding:
        return self.word.embedding

    def forward(self, src: torch.Tensor, seg: torch.Tensor, sub: Optional[torch.Tensor] = None,
                task: Optional[torch.Tensor] = None) -> torch.Tensor:
        """src, seg: (B, T); sub: (B, T, C) character ids, needed (only) with subword features; task: (B,) or
        (B, T) task ids for the task embedding (None: the config's task_id)."""
        emb = self.word(src, seg)
        for name in self.names:
            if name != "word":
                part = getattr(self, name)
                emb = emb + (part(src, seg, task) if getattr(part, "takes_task", False) else part(src, seg))
        if self.subword is not None:
            if sub is None:
                raise ValueError("this model adds each word's character encoding (subword_type 'char'): its "
                                 "batches need tgt['sub'], the (B, T, C) character ids that SubwordTable gives")
            emb = emb + self.subword(sub)
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
