"""Sequence to sequence (UER-py's `s2s` target, in its repository from 2019 to 2020; its README: "supports
autoencoder and machine translation"): a one-layer LSTM decoder whose state starts from the encoder's
hidden state and which predicts the target sequence token by token, with teacher forcing.

As UER-py's: the decoder has its own token embedding (emb_size) and an output layer hidden ->
vocabulary, and both its initial hidden and cell states are the encoder's hidden state.  Unlike UER-py's,
whose decoder read target token t to predict target token t itself (a copy) and started from the last
position even where that was padding, the decoder reads [CLS] target (one step behind) to predict target
[SEP], and starts from the encoder's last real position.  The loss covers every position (IGNORE_INDEX
outside the target) without boolean indexing, so the forward never waits on the device.
"""
from __future__ import annotations

import torch
from torch import nn

from uer_ds.config import ModelConfig
from uer_ds.models.embeddings.parts import RECURRENT_INPUT_STD
from uer_ds.models.targets.base import TargetResult, classification_result


class S2sTarget(nn.Module):
    tied_parameter = "output_layer.weight"
    vocabulary_parameters = ("embedding.weight", "output_layer.weight", "output_layer.bias")  # for adapt-vocab

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.emb_size)
        self.embedding.init_std = RECURRENT_INPUT_STD  # the decoder's LSTM reads it as it is
        self.decoder = nn.LSTM(cfg.emb_size, cfg.hidden_size, num_layers=1, batch_first=True)
        self.output_layer = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=cfg.has_lmtarget_bias)

    def initial_state(self, hidden: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder's (h, c), each (1, B, H): the encoder's hidden state at the last real source position.
        hidden: (B, T, H) the encoder's; seg: (B, T), 0 at padding."""
        last = ((seg > 0).sum(dim=1) - 1).clamp(min=0)  # (B,) the last real source position
        state = hidden[torch.arange(hidden.shape[0], device=hidden.device), last].unsqueeze(0)  # (1, B, H)
        return state.contiguous(), state.contiguous()

    def step(self, inputs: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """inputs: (B, S) decoder input ids (negative: none), read after `state` -> logits (B, S, V) and the
        state after them (what decoding passes to the next step: one token at a time costs one LSTM step)."""
        out, state = self.decoder(self.embedding(inputs.clamp(min=0)), state)
        return self.output_layer(out), state

    def logits(self, hidden: torch.Tensor, seg: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """hidden: (B, T, H) the encoder's; seg: (B, T); inputs: (B, S) decoder input ids (negative: none)
        -> (B, S, V)."""
        return self.step(inputs, self.initial_state(hidden, seg))[0]

    def forward(self, hidden: torch.Tensor, tgt: torch.Tensor, seg: torch.Tensor) -> TargetResult:
        """tgt: (B, S, 2) = (decoder input, label), IGNORE_INDEX after the target's end."""
        logits = self.logits(hidden, seg, tgt[..., 0])  # (B, S, V)
        return classification_result(logits.flatten(0, 1), tgt[..., 1].flatten())
