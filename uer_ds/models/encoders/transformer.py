"""Transformer encoder: post-LN (BERT) or pre-LN (GPT-2), fully visible or causal, ALBERT sharing; unpadded
(packed tokens, varlen attention) with the Triton kernels on batches that come with a Packing."""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from torch import nn

from uer_ds.config import ModelConfig
from uer_ds.models.layers import LayerNorm, MultiHeadedAttention, PositionwiseFeedForward
from uer_ds.models.layers.attention import KVCache
from uer_ds.models.layers.dispatch import fuses_sublayer, kernel_ops, runs_unpadded
from uer_ds.models.layers.packing import Packing, PackedHidden, pack


class TransformerLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.pre_ln = cfg.layernorm_positioning == "pre"
        self.self_attn = MultiHeadedAttention(cfg.hidden_size, cfg.heads_num, cfg.dropout, cfg.kernels,
                                              cfg.attention_head_size)
        self.layer_norm_1 = LayerNorm(cfg.hidden_size, cfg.layernorm_eps, cfg.kernels)
        self.feed_forward = PositionwiseFeedForward(cfg.hidden_size, cfg.feedforward_size, cfg.hidden_act)
        self.layer_norm_2 = LayerNorm(cfg.hidden_size, cfg.layernorm_eps, cfg.kernels)
        self.dropout_1 = nn.Dropout(cfg.dropout)
        self.dropout_2 = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, key_padding_mask: Optional[torch.Tensor], causal: bool,
                kv_cache: Optional[KVCache] = None) -> torch.Tensor:
        """x: (B, T, H) -> (B, T, H).  kv_cache: this layer's cache for incremental decoding, or None."""
        return self._sublayers(x, lambda h, bias: self.self_attn(h, key_padding_mask, causal, kv_cache, bias=bias))

    def forward_packed(self, x: torch.Tensor, packing: Packing, causal: bool) -> torch.Tensor:
        """x: (N, H), a batch's real tokens packed by `packing` -> (N, H): every op on the N tokens,
        attention within each sequence (varlen)."""
        return self._sublayers(x, lambda h, bias: self.self_attn.forward_packed(h, packing, causal, bias=bias))

    def _sublayers(self, x: torch.Tensor, attend: Callable[[torch.Tensor, bool], torch.Tensor]) -> torch.Tensor:
        """The two sublayers around `attend(x, bias)`, on (..., H) rows whatever their layout."""
        if self.pre_ln:
            x = x + self.dropout_1(attend(self.layer_norm_1(x), True))
            return x + self.dropout_2(self.feed_forward(self.layer_norm_2(x)))
        if fuses_sublayer(kernel_ops(self.layer_norm_1.kernels, x)):
            # post-LN with the Triton kernels: each sublayer's output bias, dropout, residual add and
            # LayerNorm in one kernel (NVIDIA's BERT fusion); parameters stay where they are
            x = self._close(attend(x, False), self.self_attn.output.bias, x, self.dropout_1, self.layer_norm_1)
            return self._close(self.feed_forward(x, bias=False), self.feed_forward.linear_2.bias, x,
                               self.dropout_2, self.layer_norm_2)
        # post-LN: the residual add happens inside the (fusable) layer norm
        x = self.layer_norm_1(self.dropout_1(attend(x, True)), residual=x)
        return self.layer_norm_2(self.dropout_2(self.feed_forward(x)), residual=x)

    def _close(self, y: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor, dropout: nn.Dropout,
               norm: LayerNorm) -> torch.Tensor:
        """norm(dropout(y + bias) + residual), fused."""
        p = dropout.p if self.training else 0.0
        return kernel_ops(norm.kernels, y).bias_dropout_add_layer_norm(y, bias, residual, norm.weight, norm.bias,
                                                                        norm.eps, p)


class TransformerEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.kernels = cfg.kernels
        self.layers_num = cfg.layers_num
        self.causal = cfg.mask == "causal"
        self.parameter_sharing = cfg.parameter_sharing
        self.linear = nn.Linear(cfg.emb_size, cfg.hidden_size) if cfg.factorized_embedding_parameterization else None
        self.transformer = nn.ModuleList(
            [TransformerLayer(cfg) for _ in range(1 if cfg.parameter_sharing else cfg.layers_num)])
        self.layer_norm = LayerNorm(cfg.hidden_size, cfg.layernorm_eps, cfg.kernels) \
            if cfg.layernorm_positioning == "pre" else None

    def layer(self, i: int) -> TransformerLayer:
        """The module that computes layer i (the same one for every i under parameter sharing)."""
        return self.transformer[0 if self.parameter_sharing else i]

    def new_cache(self) -> list[KVCache]:
        """An empty KV cache, one entry per layer, for `forward(..., cache=)`."""
        return [KVCache() for _ in range(self.layers_num)]

    def forward(self, emb: torch.Tensor, seg: torch.Tensor, cache: Optional[list[KVCache]] = None,
                padded: Union[None, bool, Packing] = None) -> Union[torch.Tensor, PackedHidden]:
        """emb: (B, T, E); seg: (B, T) with 0 at padding -> (B, T, H), or PackedHidden when run unpadded.

        padded: False when the collate function saw no padding in the batch (attention then takes its
        unmasked fast path); True or None: mask the padding; the batch's Packing (BatchInfo.packing,
        made by the collate function): padded, and where the real tokens are.  With the Triton kernels
        a Packing runs the encoder unpadded (pack once, every layer on the N real tokens, varlen
        attention) and returns PackedHidden (N, H) for the heads; otherwise it means True.  Never
        decided here from `seg`, which would make the host wait for the device.
        cache (causal encoders, inference only): from `new_cache()`; emb and seg then hold only the new
        positions, which attend to the cached ones as well.  No padding with a cache.
        """
        if cache is not None:
            _check_cache(cache, self.layers_num, self.causal, seg)
            padded = False
        if isinstance(padded, Packing) and runs_unpadded(self.kernels, emb):
            return self._forward_packed(emb, padded)
        key_padding_mask = None if padded is False else seg == 0  # (B, T)
        hidden = self.linear(emb) if self.linear is not None else emb
        for i in range(self.layers_num):
            hidden = self.layer(i)(hidden, key_padding_mask, self.causal, *([] if cache is None else [cache[i]]))
        if self.layer_norm is not None:
            hidden = self.layer_norm(hidden)
        return hidden

    def _forward_packed(self, emb: torch.Tensor, packing: Packing) -> PackedHidden:
        """The unpadded path: emb (B, T, E) packed once to its N real tokens, every layer on (N, H)."""
        if tuple(packing.shape) != tuple(emb.shape[:2]):
            raise ValueError(f"the batch's Packing is for shape {tuple(packing.shape)}, the embedding has "
                             f"{tuple(emb.shape[:2])}: give each batch its own BatchInfo.packing")
        hidden = pack(emb, packing)  # (N, E)
        if self.linear is not None:
            hidden = self.linear(hidden)
        for i in range(self.layers_num):
            hidden = self.layer(i).forward_packed(hidden, packing, self.causal)
        if self.layer_norm is not None:
            hidden = self.layer_norm(hidden)
        return PackedHidden(hidden, packing)


def _check_cache(cache: list[KVCache], layers_num: int, causal: bool, seg: torch.Tensor) -> None:
    if not causal:
        raise ValueError("a KV cache needs a causal encoder (mask 'causal'): earlier positions may not see later ones")
    if len(cache) != layers_num:
        raise ValueError(f"the KV cache has {len(cache)} layers, the encoder {layers_num}; use encoder.new_cache()")
    if bool((seg == 0).any()):
        raise ValueError("incremental decoding with a KV cache takes no padding (seg 0)")
