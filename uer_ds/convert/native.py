"""uer_ds's own model directories as a conversion format.

A model directory is `config.json` + `model.safetensors` (uer_ds.models.io); a conversion may add
`extra.safetensors`: tensors from the source checkpoint that the model has no place for, and the
source's config in its metadata, so `--to hf` can restore them exactly.  Nothing else reads it.

`--from uer_ds` reads any directory kind listed in UER_DS_LAYOUTS; a DeepSpeed ZeRO checkpoint
directory (issue #4) is one more entry there: (description, recognise(path), read(path) -> Checkpoint).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Union

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from uer_ds.convert.rules import Checkpoint, Report, common_dtype, new_directory

PathLike = Union[str, os.PathLike]
EXTRA_NAME = "extra.safetensors"


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def read_extra(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(extra tensors, meta) from a model directory's extra.safetensors, or empty ones."""
    extra_path = path / EXTRA_NAME
    if not extra_path.is_file():
        return {}, {}
    try:
        with safe_open(str(extra_path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            metadata = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"{extra_path}: not a readable safetensors file ({err})") from None
    meta = {k: json.loads(v) for k, v in metadata.items() if k != "format"}
    return tensors, meta


def read_model_dir(path: Path) -> Checkpoint:
    from uer_ds.models import load_model
    from uer_ds.models.io import unique_state_dict

    model = load_model(path)  # checks the weights against the config, key by key and shape by shape
    extra, meta = read_extra(path)
    return Checkpoint(model.config, unique_state_dict(model), extra, meta)


def is_checkpoint_dir(path: Path) -> bool:
    from uer_ds.engine.checkpoint import checkpoint_location

    return checkpoint_location(path) is not None


def read_checkpoint_dir(path: Path) -> Checkpoint:
    """A training checkpoint (DeepSpeed ZeRO shards or pipeline layers), gathered to fp32 in this process;
    its latest tag, or the tag directory given."""
    from uer_ds.engine.checkpoint import checkpoint_location, export_state  # pulls in deepspeed
    from uer_ds.models.io import model_from_state, unique_state_dict

    cfg, state = export_state(*checkpoint_location(path))
    return Checkpoint(cfg, unique_state_dict(model_from_state(cfg, state, str(path))), {}, {})


# How `--from uer_ds` reads each kind of directory, tried in order.
UER_DS_LAYOUTS: list[tuple[str, Callable[[Path], bool], Callable[[Path], Checkpoint]]] = [
    ("model directory (config.json + model.safetensors)", is_model_dir, read_model_dir),
    ("training checkpoint directory ('latest' + global_step<N>/, any ZeRO stage or pipeline) or one of its tags",
     is_checkpoint_dir, read_checkpoint_dir),
]


def read_uer_ds(input_path: PathLike) -> tuple[Checkpoint, Report]:
    path = Path(input_path)
    if not path.is_dir():
        raise NotADirectoryError(f"--input {path}: not a directory (uer_ds models are directories)")
    for description, recognise, read in UER_DS_LAYOUTS:
        if recognise(path):
            ckpt = read(path)
            return ckpt, Report(converted=len(ckpt.state), notes=[f"read uer_ds {description}"])
    kinds = "; ".join(description for description, _, _ in UER_DS_LAYOUTS)
    raise FileNotFoundError(f"--input {path}: not a uer_ds directory; expected one of: {kinds}")


def write_uer_ds(ckpt: Checkpoint, output_dir: PathLike) -> Report:
    """config.json + model.safetensors (+ extra.safetensors when there are extras or a source config)."""
    from uer_ds.models import build_model, save_model
    from uer_ds.models.io import load_state_dict_checked

    model = build_model(ckpt.config, device="meta").to_empty(device="cpu").to(common_dtype(ckpt.state))
    model.init_weights()  # buffers (sinusoidal tables); every parameter is then loaded
    load_state_dict_checked(model, ckpt.state, source="the converted checkpoint", strict=True)
    with new_directory(output_dir) as tmp:
        if ckpt.extra or ckpt.meta:
            metadata = {"format": "pt", **{k: json.dumps(v, sort_keys=True) for k, v in ckpt.meta.items()}}
            save_file({k: v.contiguous() for k, v in ckpt.extra.items()}, str(tmp / EXTRA_NAME), metadata=metadata)
        save_model(model, tmp)
    return Report(converted=len(ckpt.state), notes=[])
