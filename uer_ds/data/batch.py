"""collate: instances -> a batch of LongTensors."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

IGNORE_INDEX = -100


def _length(instance: dict) -> int:
    """Positions up to the last non-padding one (seg > 0)."""
    nonpad = np.flatnonzero(np.asarray(instance["seg"]) > 0)
    return int(nonpad[-1]) + 1 if len(nonpad) else 0


def collate(instances: Sequence[dict], pad_id: int = 0, pad_to: Optional[int] = None) -> dict:
    """[{"src": (T_i,), "seg": (T_i,), "tgt": {name: () | (T_i,) | (T_i, 2)}}] ->
    {"src": (B, T), "seg": (B, T), "tgt": {name: (B,) | (B, T) | (B, T, 2)}}, all int64.

    T = pad_to, or the batch's longest non-padding length (PretrainDataset instances come padded
    to seq_length; the all-padding columns are dropped).  Shorter rows are padded with pad_id
    (src), 0 (seg) and -100 (labels); padding beyond T is cut, real tokens never (ValueError).
    """
    if not instances:
        raise ValueError("collate needs at least one instance")
    lengths = [_length(x) for x in instances]
    T = max(lengths) if pad_to is None else pad_to
    if max(lengths) > T:
        raise ValueError(f"an instance has {max(lengths)} non-padding positions, more than pad_to ({T})")
    B = len(instances)
    src = torch.full((B, T), pad_id, dtype=torch.long)
    seg = torch.zeros((B, T), dtype=torch.long)
    tgt: dict[str, torch.Tensor] = {}
    for name, value in instances[0]["tgt"].items():
        shape = np.shape(value)
        tgt[name] = torch.full((B,) if not shape else (B, T) + tuple(shape[1:]), IGNORE_INDEX, dtype=torch.long)
    for row, x in enumerate(instances):
        n = min(len(x["src"]), T)
        src[row, :n] = torch.as_tensor(np.asarray(x["src"][:n], dtype=np.int64))
        seg[row, :n] = torch.as_tensor(np.asarray(x["seg"][:n], dtype=np.int64))
        for name, value in x["tgt"].items():
            value = np.asarray(value, dtype=np.int64)
            if value.ndim == 0:
                tgt[name][row] = int(value)
            else:
                tgt[name][row, : min(len(value), T)] = torch.as_tensor(value[:T])
    return {"src": src, "seg": seg, "tgt": tgt}
