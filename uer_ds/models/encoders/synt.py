"""synt: Synthesizer layers (Tay et al., 2020, "Synthesizer: Rethinking Self-Attention in Transformer
Models", arXiv:2005.00743) inside the transformer block: the attention weights are synthesized
instead of computed from query-key dot products; the value projection, residuals, layer norms and
feed-forward sublayer are the transformer's.

  dense   (the paper's section 3.1)  B_i = W_2 relu(W_1 x_i + b_1) + b_2: each token's hidden state
          gives its own row of attention logits over the ell = max_seq_length positions, per head
  random  (section 3.2)  B = R, a learned (heads, ell, ell) matrix that depends on no input
Y = softmax(B[:T, :T] + mask) G(x), with G the value projection, per head; heads are merged and
projected as in multi-head attention.  `synt_type` chooses; UER-py's SyntEncoder (removed in its
commit "better code style") had both, single-headed.  Sequences may not exceed max_seq_length.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from uer_ds.config import ModelConfig
from uer_ds.models.encoders.attn import key_padding_mask
from uer_ds.models.layers import LayerNorm, PositionwiseFeedForward
from uer_ds.registry import SYNTHESIZERS, locate


class Synthesizer(nn.Module):
    """Synthesized multi-head attention: (B, T, H) -> (B, T, H).  Subclasses give `logits(x)`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.heads_num, self.length = cfg.heads_num, cfg.max_seq_length
        self.dropout = nn.Dropout(cfg.dropout)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.output = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, H) -> attention logits (B or 1, heads, T, T)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor], causal: bool) -> torch.Tensor:
        """x: (B, T, H); mask: (B, T) True at padding keys, or None."""
        b, t, h = x.shape
        if t > self.length:
            raise ValueError(f"sequence length {t} exceeds max_seq_length ({self.length}), the synthesizer's width")
        scores = self.logits(x).float()  # (B|1, nh, T, T)
        hidden = torch.ones(1, 1, 1, t, dtype=torch.bool, device=x.device)
        if mask is not None:
            hidden = ~mask[:, None, None, :]  # (B, 1, 1, T) visible keys
        if causal:
            hidden = hidden & torch.ones(t, t, dtype=torch.bool, device=x.device).tril()  # (B|1, 1, T, T)
        probs = torch.softmax(scores.masked_fill(~hidden, torch.finfo(scores.dtype).min), dim=-1)
        probs = self.dropout(probs.to(x.dtype))
        values = self.value(x).view(b, t, self.heads_num, h // self.heads_num).transpose(1, 2)  # (B, nh, T, hs)
        return self.output(torch.matmul(probs, values).transpose(1, 2).reshape(b, t, h))  # (B, T, H)


class DenseSynthesizer(Synthesizer):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.linear_1 = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.linear_2 = nn.Linear(cfg.hidden_size, cfg.heads_num * cfg.max_seq_length)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        rows = self.linear_2(F.relu(self.linear_1(x)))  # (B, T, nh * ell)
        return rows.view(b, t, self.heads_num, self.length)[..., :t].transpose(1, 2)  # (B, nh, T, T)


class RandomSynthesizer(Synthesizer):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.random = nn.Parameter(torch.empty(cfg.heads_num, cfg.max_seq_length, cfg.max_seq_length))

    def reset_own_parameters(self) -> None:
        """N(0, 0.02), the model's initializer range (called by uer_ds.models.model.init_module)."""
        nn.init.normal_(self.random, std=0.02)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        return self.random[:, :t, :t].unsqueeze(0)  # (1, nh, T, T)




class SyntLayer(nn.Module):
    """A transformer layer whose self-attention is a synthesizer (post-LN or pre-LN)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.pre_ln = cfg.layernorm_positioning == "pre"
        self.synthesizer = locate(SYNTHESIZERS[cfg.synt_type])(cfg)
        self.layer_norm_1 = LayerNorm(cfg.hidden_size, cfg.layernorm_eps, cfg.kernels)
        self.feed_forward = PositionwiseFeedForward(cfg.hidden_size, cfg.feedforward_size, cfg.hidden_act)
        self.layer_norm_2 = LayerNorm(cfg.hidden_size, cfg.layernorm_eps, cfg.kernels)
        self.dropout_1 = nn.Dropout(cfg.dropout)
        self.dropout_2 = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor], causal: bool) -> torch.Tensor:
        if self.pre_ln:
            x = x + self.dropout_1(self.synthesizer(self.layer_norm_1(x), mask, causal))
            return x + self.dropout_2(self.feed_forward(self.layer_norm_2(x)))
        x = self.layer_norm_1(self.dropout_1(self.synthesizer(x, mask, causal)), residual=x)
        return self.layer_norm_2(self.dropout_2(self.feed_forward(x)), residual=x)


class SyntEncoder(nn.Module):

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.causal_mask = cfg.mask == "causal"
        self.layers = nn.ModuleList(SyntLayer(cfg) for _ in range(cfg.layers_num))
        self.layer_norm = LayerNorm(cfg.hidden_size, cfg.layernorm_eps, cfg.kernels) \
            if cfg.layernorm_positioning == "pre" else None

    def forward(self, emb: torch.Tensor, seg: torch.Tensor, padded: Optional[bool] = None) -> torch.Tensor:
        """emb: (B, T, H); seg: (B, T), 0 at padding -> (B, T, H)."""
        mask = key_padding_mask(seg, padded)
        hidden = emb
        for layer in self.layers:
            hidden = layer(hidden, mask, self.causal_mask)
        return hidden if self.layer_norm is None else self.layer_norm(hidden)
