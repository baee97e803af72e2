"""uer_ds's own model directories as a conversion format.

A model directory is `config.json` + `model.safetensors` (uer_ds.models.io); a conversion may add
`extra.safetensors`: tensors from the source checkpoint that the model has no place for, and the
source's config in its metadata, so `--to hf` can restore them exactly.  Nothing else reads it.

What a path is (a model directory, a training run, ...) is decided by the one resolver,
uer_ds.convert.resolve, which reads the extras with `read_extra`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Union

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from uer_ds.convert.rules import Checkpoint, Report, common_dtype, new_directory

PathLike = Union[str, os.PathLike]
EXTRA_NAME = "extra.safetensors"


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
