"""A DeepSpeed PipelineModule generated from the model's own layer list.

    word table -> rest of the embedding (+ factorized projection) -> transformer layer x N
    -> final layer norm (pre-LN) -> targets (the heads; the loss is computed with the labels)

Activations between stages are the pair (hidden, seg); seg carries the padding mask.  With
tie_weights the word table is a TiedLayerSpec at both ends, so the MLM/LM output matrix on the last
stage is the first stage's word embedding (DeepSpeed all-reduces its gradient between the two).
Works for BERT-style (fully visible, any targets incl. MLM + SP) and GPT-style (causal) models.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from deepspeed.pipe import LayerSpec, PipelineModule, TiedLayerSpec
from torch import nn

from uer_ds.config import ModelConfig
from uer_ds.models.embeddings.parts import WordEmbedding
from uer_ds.models.layers import LayerNorm
from uer_ds.models.model import init_module
from uer_ds.models.registry import EMBEDDINGS
from uer_ds.models.targets import TARGETS, TargetResult
from uer_ds.models.targets.base import Picked
from uer_ds.models.encoders import TransformerLayer

Pair = tuple[torch.Tensor, torch.Tensor]


class WordTablePipe(nn.Module):
    """(src, seg) -> (word vectors, seg)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.word = WordEmbedding(cfg)

    def forward(self, inputs: Pair) -> Pair:
        src, seg = inputs
        return self.word(src, seg), seg


class EmbeddingRestPipe(nn.Module):
    """Adds the other embedding parts, layer norm, dropout and the factorized projection."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.parts = nn.ModuleDict({name: EMBEDDINGS[name](cfg) for name in cfg.embedding if name != "word"})
        self.layer_norm = None if cfg.remove_embedding_layernorm else \
            LayerNorm(cfg.emb_size, cfg.layernorm_eps, cfg.kernels)
        self.dropout = nn.Dropout(cfg.dropout)
        self.linear = nn.Linear(cfg.emb_size, cfg.hidden_size) if cfg.factorized_embedding_parameterization else None

    def forward(self, inputs: Pair) -> Pair:
        emb, seg = inputs
        for part in self.parts.values():
            emb = emb + part(seg, seg)  # positional parts read only the shape of their first argument
        if self.layer_norm is not None:
            emb = self.layer_norm(emb)
        emb = self.dropout(emb)
        return (self.linear(emb) if self.linear is not None else emb), seg


class TransformerLayerPipe(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.causal = cfg.mask == "causal"
        self.layer = TransformerLayer(cfg)

    def forward(self, inputs: Pair) -> Pair:
        hidden, seg = inputs
        key_padding_mask = seg == 0
        return self.layer(hidden, key_padding_mask, self.causal), seg


class FinalNormPipe(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.layer_norm = LayerNorm(cfg.hidden_size, cfg.layernorm_eps, cfg.kernels)

    def forward(self, inputs: Pair) -> Pair:
        hidden, seg = inputs
        return self.layer_norm(hidden), seg


class TargetPipe(nn.Module):
    """Holds the heads; they run in the loss function, which has the labels."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.target = nn.ModuleDict({name: TARGETS[name](cfg) for name in cfg.target})

    def forward(self, inputs: Pair) -> Pair:
        return inputs


def _pass_through(module: nn.Module, inputs: Pair) -> Pair:
    return inputs


class TargetLoss:
    """loss_fn(outputs, labels) for the last stage; keeps each micro-batch's TargetResult for reporting."""

    def __init__(self, heads: TargetPipe, names: tuple[str, ...]) -> None:
        self.heads = heads
        self.names = names
        self.results: list[TargetResult] = []
        # set by the engine for each step: (micro-batch index, result) -> the loss to train on
        self.weigh: Optional[Callable[[int, TargetResult], torch.Tensor]] = None

    def __call__(self, outputs: Pair, labels: tuple[torch.Tensor, ...]) -> torch.Tensor:
        hidden, seg = outputs
        parts = {name: self.heads.target[name](hidden, label, seg)
                 for name, label in zip(self.names, unflatten_labels(labels))}
        result = TargetResult.combine(parts)
        self.results.append(result)
        return result.loss if self.weigh is None else self.weigh(len(self.results) - 1, result)


def layer_specs(cfg: ModelConfig) -> list:
    if cfg.encoder != "transformer":
        raise ValueError(f"--pipeline_stages needs a transformer encoder (encoder is '{cfg.encoder}')")
    if cfg.parameter_sharing:
        raise ValueError("--pipeline_stages with parameter_sharing (ALBERT) is not supported: the shared layer "
                         "would have to live on every stage; train ALBERT with ZeRO instead")
    tied = cfg.tie_weights
    specs: list = [TiedLayerSpec("word", WordTablePipe, cfg, tied_weight_attr="word.embedding.weight") if tied
                   else LayerSpec(WordTablePipe, cfg),
                   LayerSpec(EmbeddingRestPipe, cfg)]
    specs += [LayerSpec(TransformerLayerPipe, cfg) for _ in range(cfg.layers_num)]
    if cfg.layernorm_positioning == "pre":
        specs.append(LayerSpec(FinalNormPipe, cfg))
    if tied:
        specs.append(TiedLayerSpec("word", WordTablePipe, cfg, forward_fn=_pass_through,
                                   tied_weight_attr="word.embedding.weight"))
    specs.append(LayerSpec(TargetPipe, cfg))
    return specs


def layer_prefixes(cfg: ModelConfig) -> list[tuple[str, str]]:
    """[(pipeline layer key prefix, Model key prefix)], for loading and exporting weights."""
    pairs = [("0.word.", "embedding.word."), ("1.layer_norm.", "embedding.layer_norm."), ("1.linear.", "encoder.linear.")]
    pairs += [(f"1.parts.{name}.", f"embedding.{name}.") for name in cfg.embedding if name != "word"]
    pairs += [(f"{2 + i}.layer.", f"encoder.transformer.{i}.") for i in range(cfg.layers_num)]
    last = 2 + cfg.layers_num
    if cfg.layernorm_positioning == "pre":
        pairs.append((f"{last}.layer_norm.", "encoder.layer_norm."))
        last += 1
    if cfg.tie_weights:
        last += 1
    pairs.append((f"{last}.target.", "target."))
    return pairs


def _to_model_key(key: str, cfg: ModelConfig) -> Optional[str]:
    for pipe_prefix, model_prefix in layer_prefixes(cfg):
        if key.startswith(pipe_prefix):
            return model_prefix + key[len(pipe_prefix):]
    return None


class UerPipelineModule(PipelineModule):
    """PipelineModule over the model's layers, with helpers to move weights in and out by Model key."""

    def __init__(self, cfg: ModelConfig, num_stages: int, activation_checkpoint_interval: int = 0,
                 seed: int = 7) -> None:
        # only transformer layers are recomputed: the word table's inputs are integer ids, and a
        # (reentrant) checkpoint over inputs without gradients would cut the table off from backward
        super().__init__(layers=layer_specs(cfg), num_stages=num_stages, partition_method="parameters",
                         activation_checkpoint_interval=activation_checkpoint_interval,
                         checkpointable_layers=["TransformerLayerPipe"])
        self.config = cfg
        for local, layer in enumerate(self.forward_funcs):  # seeded per layer: same values on any partition
            if isinstance(layer, nn.Module):
                torch.manual_seed(seed + int(self._local_start) + local)
                for module in layer.modules():
                    init_module(module)
        heads = next((m for m in self.forward_funcs if isinstance(m, TargetPipe)), None)
        if heads is not None:
            if cfg.tie_weights:
                word = self.tied_modules["word"].word.embedding.weight
                for head in heads.target.values():
                    name = getattr(head, "tied_parameter", None)
                    if name:
                        module_name, param_name = name.rsplit(".", 1)
                        setattr(head.get_submodule(module_name), param_name, word)
            self.loss_fn = TargetLoss(heads, tuple(cfg.target))
        self._synchronize_tied_weights()

    def model_state_items(self) -> dict[str, torch.Tensor]:
        """This stage's parameters and buffers under the Model's key names."""
        out: dict[str, torch.Tensor] = {}
        for local, module in enumerate(self.forward_funcs):
            if not isinstance(module, nn.Module):
                continue
            index = int(self._local_start) + local
            for key, value in module.state_dict().items():
                model_key = _to_model_key(f"{index}.{key}", self.config)
                if model_key is not None:
                    out.setdefault(model_key, value)
        return out

    @torch.no_grad()
    def load_model_state(self, state: dict[str, torch.Tensor]) -> None:
        """Copy a Model state dict into this stage's layers (each stage takes its own part)."""
        for local, module in enumerate(self.forward_funcs):
            if not isinstance(module, nn.Module):
                continue
            index = int(self._local_start) + local
            for key, param in module.state_dict(keep_vars=True).items():
                model_key = _to_model_key(f"{index}.{key}", self.config)
                if model_key is None or model_key not in state:
                    raise ValueError(f"pretrained weights lack '{model_key or key}' (pipeline layer {index})")
                if param.shape != state[model_key].shape:
                    raise ValueError(f"pretrained key '{model_key}' has shape {tuple(state[model_key].shape)}, "
                                     f"the model expects {tuple(param.shape)}")
                param.copy_(state[model_key])
        self._synchronize_tied_weights()  # the last stage's copy of the word table follows the first


def pipeline_batch(batch: dict, target_names: tuple[str, ...]) -> tuple[Pair, tuple[torch.Tensor, ...]]:
    """A collated batch -> ((src, seg), labels in target order), the pipeline engine's format, whose
    labels are a flat tuple of tensors: a `Picked` becomes (PICKED_MARK, index, labels)."""
    tgt = batch["tgt"]
    flat: list[torch.Tensor] = []
    for name in target_names:
        labels = tgt[name]
        flat += [PICKED_MARK.to(labels.index.device), labels.index, labels.labels] if isinstance(labels, Picked) \
            else [labels]
    return (batch["src"], batch["seg"]), tuple(flat)


# a label tensor no target produces (a 0-d float): "the next two tensors are a Picked's index and labels"
PICKED_MARK = torch.tensor(float("nan"))


def unflatten_labels(flat: tuple[torch.Tensor, ...]) -> list:
    """pipeline_batch's flat label tuple -> one label (tensor or Picked) per target.  Decided from
    shapes and dtypes only (host metadata), never from values."""
    out, i = [], 0
    while i < len(flat):
        if flat[i].dim() == 0 and flat[i].is_floating_point():
            out.append(Picked(flat[i + 1], flat[i + 2]))
            i += 3
        else:
            out.append(flat[i])
            i += 1
    return out


__all__ = ["UerPipelineModule", "layer_specs", "pipeline_batch", "unflatten_labels"]
