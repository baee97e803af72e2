"""A DeepSpeed PipelineModule generated from the model's own layer list (uer_ds.models.layer_list).

Each Layer becomes a LayerSpec of a LayerModule (built only on the stage that holds it); the repeated
transformer layers are the ones DeepSpeed's activation checkpointing recomputes.  Activations between
stages are the pair (hidden, seg); seg carries the padding mask.  With tie_weights the word table is a
TiedLayerSpec at both ends, so the MLM/LM output matrix on the last stage is the first stage's word
embedding (DeepSpeed all-reduces its gradient between the two).  Works for BERT-style (fully visible,
any targets incl. MLM + SP) and GPT-style (causal) models.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from deepspeed.pipe import LayerSpec, PipelineModule, TiedLayerSpec
from torch import nn

from uer_ds.config import ModelConfig
from uer_ds.models.layer_list import Layer, LayerModule, key_prefixes, layer_list
from uer_ds.models.model import init_module
from uer_ds.models.targets import TargetResult
from uer_ds.models.targets.base import Picked

Pair = tuple[torch.Tensor, torch.Tensor]


class RecomputedLayerModule(LayerModule):
    """A LayerModule that DeepSpeed's activation checkpointing recomputes (it selects by class name)."""


class TargetLoss:
    """loss_fn(outputs, labels) for the last stage; keeps each micro-batch's TargetResult for reporting."""

    def __init__(self, heads: LayerModule, names: tuple[str, ...]) -> None:
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


def _pipeline_layers(cfg: ModelConfig) -> list[Layer]:
    if cfg.encoder != "transformer":
        raise ValueError(f"--pipeline_stages needs a transformer encoder (encoder is '{cfg.encoder}')")
    if cfg.parameter_sharing:
        raise ValueError("--pipeline_stages with parameter_sharing (ALBERT) is not supported: the shared layer "
                         "would have to live on every stage; train ALBERT with ZeRO instead")
    return layer_list(cfg)


def _spec(layer: Layer):
    module = RecomputedLayerModule if layer.recompute else LayerModule
    if not layer.tied:
        return LayerSpec(module, layer)
    weight = f"{next(iter(layer.parts))}.embedding.weight"  # the word table's matrix
    if layer.heads_side:  # the same module as the first copy, its forward left out: the heads use its weight
        return TiedLayerSpec(layer.tied, module, layer, forward_fn=_pass_through, tied_weight_attr=weight)
    return TiedLayerSpec(layer.tied, module, layer, tied_weight_attr=weight)


def _pass_through(module: nn.Module, inputs: Pair) -> Pair:
    return inputs


def layer_specs(cfg: ModelConfig) -> list:
    """The PipelineModule's layers: one spec per entry of the model's layer list."""
    return [_spec(layer) for layer in _pipeline_layers(cfg)]


def layer_prefixes(cfg: ModelConfig) -> list[tuple[str, str]]:
    """[(pipeline layer key prefix, Model key prefix)], for loading and exporting weights."""
    return key_prefixes(_pipeline_layers(cfg))


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
                         checkpointable_layers=[RecomputedLayerModule.__name__])
        self.config = cfg
        for local, layer in enumerate(self.forward_funcs):  # seeded per layer: same values on any partition
            if isinstance(layer, nn.Module):
                torch.manual_seed(seed + int(self._local_start) + local)
                for module in layer.modules():
                    init_module(module)
        heads = next((m for m in self.forward_funcs if getattr(m, "kind", None) == "heads"), None)
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
