"""Model directories: `config.json` (UER key names) + `model.safetensors`.

Tied parameters are stored once (under their first name) and re-tied on load.  Files are written
under temporary names and renamed, so an interrupted save never leaves a directory that looks whole.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import torch
from safetensors.torch import load_file, save_file

from uer_ds.atomic import atomic_paths
from uer_ds.config import ModelConfig
from uer_ds.models.model import Model, build_model

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def aliased_keys(model: torch.nn.Module) -> dict[str, str]:
    """{alias: canonical} for parameters registered under more than one name (tied weights)."""
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            aliases[name] = first[id(param)]
        else:
            first[id(param)] = name
    return aliases


def unique_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict without the alias keys of tied parameters, contiguous, on CPU."""
    aliases = aliased_keys(model)
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in aliases}


def save_model(model: Model, directory: Union[str, os.PathLike]) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # config.json last: a directory with it is complete
    with atomic_paths(directory / WEIGHTS_NAME, directory / CONFIG_NAME) as (tmp_weights, tmp_config):
        model.config.to_json(tmp_config)
        save_file(unique_state_dict(model), str(tmp_weights), metadata={"format": "pt", "producer": "uer_ds"})
    return directory


def load_state_dict_checked(model: Model, state: dict[str, torch.Tensor], source: str, strict: bool = True
                            ) -> tuple[list[str], list[str]]:
    """Load `state`; raise naming missing/unexpected keys and shape mismatches (unless strict=False)."""
    own = model.state_dict()
    aliases = aliased_keys(model)
    for key, tensor in state.items():
        if key in own and own[key].shape != tensor.shape:
            raise ValueError(f"{source}: key '{key}' has shape {tuple(tensor.shape)}, the model expects "
                             f"{tuple(own[key].shape)}")
    missing = sorted(k for k in own if k not in state and k not in aliases)
    unexpected = sorted(k for k in state if k not in own)
    if strict and (missing or unexpected):
        raise ValueError(f"{source}: state dict does not match the model: missing keys {missing}, "
                         f"unexpected keys {unexpected}")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    model.tie_weights()
    return missing, unexpected


def model_from_state(cfg: ModelConfig, state: dict[str, torch.Tensor], source: str, strict: bool = True,
                     device: Union[str, torch.device] = "cpu") -> Model:
    """A Model with `state`'s weights, built without a throw-away random initialisation."""
    model = build_model(cfg, device="meta").to_empty(device=device)
    model.init_weights()  # buffers and anything the state does not hold (when strict=False)
    load_state_dict_checked(model, state, source, strict)
    return model


def load_model(directory: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
               strict: bool = True) -> Model:
    """Rebuild a Model from a directory written by save_model (or `uer-ds convert`)."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{directory}: not a model directory: {path.name} is missing")
    cfg = ModelConfig.from_json(config_path)
    state = load_file(str(weights_path), device=str(device))
    return model_from_state(cfg, state, str(weights_path), strict, device).eval()
