"""Average several checkpoints of one model (UER-py's scripts/average_models.py), parameter by parameter.

Inputs are model directories (any the resolver, uer_ds.convert.resolve, reads: runs, tags, model,
task and Hugging Face directories; the output is a model directory) or weight files (.safetensors / .bin state dicts, UER-py's included; the output's suffix
picks the format, .bin for UER-py).  Sums run in float64 and are cast back, so averaging copies of one
checkpoint gives it back exactly.  Keys, shapes, dtypes and (for directories) model configs must agree.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from uer_ds.convert.native import write_uer_ds
from uer_ds.convert.resolve import resolve_model
from uer_ds.convert.rules import Checkpoint, new_file

PathLike = Union[str, os.PathLike]


def _check_same(first: dict[str, torch.Tensor], state: dict[str, torch.Tensor], source: str, reference: str) -> None:
    if set(first) != set(state):
        raise ValueError(f"{source}: keys differ from {reference}: missing {sorted(set(first) - set(state))}, "
                         f"extra {sorted(set(state) - set(first))}")
    for key, tensor in state.items():
        if tensor.shape != first[key].shape or tensor.dtype != first[key].dtype:
            raise ValueError(f"{source}: key '{key}' is {tuple(tensor.shape)} {tensor.dtype}, in {reference} "
                             f"{tuple(first[key].shape)} {first[key].dtype}")


def _config_difference(a, b) -> Optional[str]:
    da, db = a.to_dict(), b.to_dict()
    for key in sorted(set(da) | set(db)):
        if da.get(key) != db.get(key):
            return f"key '{key}' is {db.get(key)!r} there, {da.get(key)!r} in the first"
    return None


def average_states(states: Sequence[tuple[str, dict[str, torch.Tensor]]]) -> dict[str, torch.Tensor]:
    """The mean of several state dicts (source name, state); integer tensors must be equal."""
    (reference, first), rest = states[0], states[1:]
    sums = {k: v.double() if v.is_floating_point() else v.clone() for k, v in first.items()}
    for source, state in rest:
        _check_same(first, state, source, reference)
        for key, tensor in state.items():
            if tensor.is_floating_point():
                sums[key] += tensor.double()
            elif not torch.equal(tensor, first[key]):
                raise ValueError(f"{source}: integer tensor '{key}' differs from {reference}'s; it cannot be averaged")
    n = len(states)
    return {k: (v / n).to(first[k].dtype) if first[k].is_floating_point() else v for k, v in sums.items()}


def average(inputs: Sequence[PathLike], output: PathLike) -> int:
    """Average `inputs` into `output`; returns the number of tensors."""
    if len(inputs) < 2:
        raise ValueError(f"give two or more checkpoints to average (got {len(inputs)})")
    sources = [resolve_model(p, "--model_list_path") for p in inputs]
    kinds = {s.kind in ("uer", "weights") for s in sources}
    if len(kinds) != 1:
        raise ValueError("inputs mix directories and files; average model directories or weight files, not both")
    if kinds == {False}:  # directories: read under uer_ds's names (runs gathered, task directories' encoders)
        ckpts = [(str(s.path), s.checkpoint()) for s in tqdm(sources, desc="reading", disable=None)]
        first = ckpts[0][1]
        for source, ckpt in ckpts[1:]:
            difference = _config_difference(first.config, ckpt.config)
            if difference:
                raise ValueError(f"{source}: model config differs from {ckpts[0][0]}'s: {difference}")
        state = average_states([(s, c.state) for s, c in ckpts])
        write_uer_ds(Checkpoint(first.config, state), output)
        return len(state)
    state = average_states([(str(s.path), s.state()) for s in tqdm(sources, desc="reading", disable=None)])
    output = Path(output)
    with new_file(output) as tmp:
        if output.suffix == ".safetensors":
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata={"format": "pt"})
        else:
            torch.save(state, tmp)
    return len(state)
