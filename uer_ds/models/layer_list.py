"""The model as a list of layers: what a pipeline cuts into stages, and what activation checkpointing
recomputes.

    word table -> rest of the embedding (+ factorized projection) -> transformer layer x N
    -> final layer norm (pre-LN) -> targets (the heads, run by the loss with the labels)

Each `Layer` holds modules built alone by the Model's own classes (the registries' embedding parts and
targets, TransformerLayer, LayerNorm), each under the Model state-dict prefix it has in `Model`, and
says how it maps the pair (hidden, seg) that flows from layer to layer (seg carries the padding mask;
the first layer gets (src, seg)).  Nothing here knows of pipelines or DeepSpeed: engine/pipeline.py
turns the list into pipeline stages, engine/recompute.py wraps the `RECOMPUTED` layers of a built
model.  A transformer encoder only (the others have no layers of one kind to cut at).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from uer_ds.config import ModelConfig
from uer_ds.models.embeddings.parts import WordEmbedding
from uer_ds.models.encoders.transformer import TransformerLayer
from uer_ds.models.layers import LayerNorm
from uer_ds.models.registry import EMBEDDINGS
from uer_ds.models.targets import TARGETS

Pair = tuple[torch.Tensor, torch.Tensor]

# the layer classes worth recomputing in the backward (activation checkpointing): the repeated blocks,
# whose activations dominate the memory.  Not the word table: its inputs are integer ids, and a
# (reentrant) checkpoint over inputs without gradients would cut the table off from the backward.
RECOMPUTED = (TransformerLayer,)


@dataclass(frozen=True)
class Layer:
    """One layer: `parts` maps a module's name in the layer to (its Model state-dict prefix, a builder);
    `run(layer, pair) -> pair` is its forward over the modules built from `parts`.  `tied` names a
    weight this layer shares with another layer of the same `tied` key (the word table at both ends
    under tie_weights); `heads_side` marks the copy at the heads' end, which holds no weights of its own."""
    kind: str
    parts: dict[str, tuple[str, Callable[[], nn.Module]]]
    run: Callable[[nn.Module, Pair], Pair]
    recompute: bool = False
    tied: str = ""
    heads_side: bool = field(default=False)


def _word(layer: nn.Module, pair: Pair) -> Pair:
    src, seg = pair
    return layer.word(src, seg), seg


def _embedding_rest(layer: nn.Module, pair: Pair) -> Pair:
    """The other embedding parts, layer norm, dropout and the factorized projection (as Embedding and
    TransformerEncoder do them)."""
    emb, seg = pair
    for part in layer.parts.values():
        emb = emb + part(seg, seg)  # positional parts read only the shape of their first argument
    if hasattr(layer, "layer_norm"):
        emb = layer.layer_norm(emb)
    emb = layer.dropout(emb)
    return (layer.linear(emb) if hasattr(layer, "linear") else emb), seg


def _transformer(causal: bool) -> Callable[[nn.Module, Pair], Pair]:
    def run(layer: nn.Module, pair: Pair) -> Pair:
        hidden, seg = pair
        return layer.layer(hidden, seg == 0, causal), seg
    return run


def _final_norm(layer: nn.Module, pair: Pair) -> Pair:
    hidden, seg = pair
    return layer.layer_norm(hidden), seg


def _pass_through(layer: nn.Module, pair: Pair) -> Pair:
    return pair


def layer_list(cfg: ModelConfig) -> list[Layer]:
    """The layers of the Model that `cfg` builds, in order (transformer encoders; ValueError otherwise)."""
    if cfg.encoder != "transformer":
        raise ValueError(f"a layer list needs a transformer encoder (encoder is '{cfg.encoder}')")
    word = {"word": ("embedding.word", lambda: WordEmbedding(cfg))}
    rest: dict[str, tuple[str, Callable[[], nn.Module]]] = {
        "parts": ("embedding", lambda: nn.ModuleDict({name: EMBEDDINGS[name](cfg) for name in cfg.embedding
                                                      if name != "word"}))}
    if not cfg.remove_embedding_layernorm:
        rest["layer_norm"] = ("embedding.layer_norm", lambda: LayerNorm(cfg.emb_size, cfg.layernorm_eps, cfg.kernels))
    rest["dropout"] = ("embedding.dropout", lambda: nn.Dropout(cfg.dropout))
    if cfg.factorized_embedding_parameterization:
        rest["linear"] = ("encoder.linear", lambda: nn.Linear(cfg.emb_size, cfg.hidden_size))
    tied = "word" if cfg.tie_weights else ""
    layers = [Layer("word", word, _word, tied=tied), Layer("embedding", rest, _embedding_rest)]
    run_layer = _transformer(cfg.mask == "causal")
    layers += [Layer("transformer", {"layer": (f"encoder.transformer.{i}", lambda: TransformerLayer(cfg))}, run_layer,
                     recompute=True) for i in range(cfg.layers_num)]
    if cfg.layernorm_positioning == "pre":
        layers.append(Layer("final_norm", {"layer_norm": ("encoder.layer_norm", lambda: LayerNorm(
            cfg.hidden_size, cfg.layernorm_eps, cfg.kernels))}, _final_norm))
    if tied:
        layers.append(Layer("word", word, _pass_through, tied=tied, heads_side=True))
    layers.append(Layer("heads", {"target": ("target", lambda: nn.ModuleDict({name: TARGETS[name](cfg)
                                                                               for name in cfg.target}))},
                        _pass_through))
    return layers


class LayerModule(nn.Module):
    """One Layer's modules, built, under their names; forward runs the layer on the carried pair."""

    def __init__(self, layer: Layer) -> None:
        super().__init__()
        self.kind = layer.kind
        self._run = layer.run
        for name, (_, build) in layer.parts.items():
            self.add_module(name, build())

    def forward(self, pair: Pair) -> Pair:
        return self._run(self, pair)


def key_prefixes(layers: list[Layer]) -> list[tuple[str, str]]:
    """[(layer key prefix "<index>.<part>.", Model key prefix)] for moving weights between the layers and
    a Model state dict; the heads-side copy of a tied layer maps to nothing (its weight is the other's)."""
    return [(f"{index}.{name}.", f"{prefix}.") for index, layer in enumerate(layers) if not layer.heads_side
            for name, (prefix, _) in layer.parts.items()]


__all__ = ["Layer", "LayerModule", "RECOMPUTED", "key_prefixes", "layer_list"]
