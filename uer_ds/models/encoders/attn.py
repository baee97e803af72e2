"""attn: self-attention layers without feed-forward sublayers (UER-py's AttnEncoder, removed in its
commit "better code style").

Each layer is a transformer layer with the feed-forward sublayer left out: multi-head self-attention,
dropout, the residual and the layer norm (post-LN as BERT, or pre-LN with a final layer norm, by
`layernorm_positioning`).  UER-py's layers had neither residual nor layer norm; with them a stack of
attention layers trains like the transformer's.  Fully visible or causal by the `mask` key.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from uer_ds.config import ModelConfig
from uer_ds.models.layers import LayerNorm, MultiHeadedAttention


def key_padding_mask(seg: torch.Tensor, padded: Optional[bool]) -> Optional[torch.Tensor]:
    """(B, T) True at padding (seg 0), or None when the collate function saw no padding."""
    return None if padded is False else seg == 0


class AttnLayer(nn.Module):
    """x (B, T, H) -> x + attention(x), layer-normed before (pre) or after (post) -> (B, T, H)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.pre_ln = cfg.layernorm_positioning == "pre"
        self.self_attn = MultiHeadedAttention(cfg.hidden_size, cfg.heads_num, cfg.dropout, cfg.kernels)
        self.layer_norm = LayerNorm(cfg.hidden_size, cfg.layernorm_eps, cfg.kernels)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor], causal: bool) -> torch.Tensor:
        if self.pre_ln:
            return x + self.dropout(self.self_attn(self.layer_norm(x), mask, causal))
        return self.layer_norm(self.dropout(self.self_attn(x, mask, causal)), residual=x)


class AttnEncoder(nn.Module):

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.causal_mask = cfg.mask == "causal"
        self.layers = nn.ModuleList(AttnLayer(cfg) for _ in range(cfg.layers_num))
        self.layer_norm = LayerNorm(cfg.hidden_size, cfg.layernorm_eps, cfg.kernels) \
            if cfg.layernorm_positioning == "pre" else None

    def forward(self, emb: torch.Tensor, seg: torch.Tensor, padded: Optional[bool] = None) -> torch.Tensor:
        """emb: (B, T, H); seg: (B, T), 0 at padding -> (B, T, H)."""
        mask = key_padding_mask(seg, padded)
        hidden = emb
        for layer in self.layers:
            hidden = layer(hidden, mask, self.causal_mask)
        return hidden if self.layer_norm is None else self.layer_norm(hidden)
