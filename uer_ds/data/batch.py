"""collate: instances -> a batch of LongTensors, and what the host knows about it (BatchInfo).

The training step never reads a batch back from the device: everything the host needs (how many
tokens and samples, whether there is padding and where the real tokens are, which positions the MLM
predicts, how many predictions each target makes) is computed here, once, on the host.
"""
from __future__ import annotations

from typing import Mapping, NamedTuple, Optional, Sequence

import numpy as np
import torch

from uer_ds.models.layers.packing import Packing, packed_rows, packing_of
from uer_ds.models.targets.base import IGNORE_INDEX, Picked


# tgt entries that are model inputs, not labels: subword character ids, the task embedding's ids (ERNIE 2.0)
INPUTS = ("sub", "task_type")


class BatchInfo(NamedTuple):
    """Host-side facts about one collated batch (plain Python values, and the Packing's index tensors).

    samples: rows B; tokens: non-padding positions (seg > 0); padded: some position is padding
    (seg == 0), so attention must mask; predictions: target or head name -> the number of labelled
    predictions its loss averages over (the loss denominator), used to weight micro-batches.
    packing: where the real tokens are (`Packing`: their flat indices, cu_seqlens, max_seqlen), made
    here once per batch for the unpadded transformer path; None when nothing is padding.
    """

    samples: int
    tokens: int
    padded: bool
    predictions: Mapping[str, int]
    packing: Optional[Packing] = None


_UNSET = object()


def to_device(batch: object, device: torch.device) -> object:
    """Tensors (in dicts, lists, tuples and NamedTuples such as Picked) to `device`; other values as they are."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def batch_info(seg: torch.Tensor, predictions: Mapping[str, int], packing: object = _UNSET) -> BatchInfo:
    """BatchInfo of a collated (B, T) segment tensor on the host (CPU); packing: the batch's
    Packing when the caller made it already (default: made here, `packing_of(seg)`)."""
    if seg.device.type != "cpu":
        raise ValueError(f"batch_info runs in the collate function on the host; seg is on {seg.device}")
    tokens = int((seg > 0).sum())
    if packing is _UNSET:
        packing = packing_of(seg) if seg.dim() == 2 else None
    return BatchInfo(samples=int(seg.shape[0]), tokens=tokens, padded=tokens < seg.numel(),
                     predictions=dict(predictions), packing=packing)


def forward_kwargs(info: Optional[BatchInfo]) -> dict:
    """The model's keyword arguments that come from a batch's BatchInfo (moved to the device with the
    batch): `padded` is the Packing when there is one (the unpadded path may use it; other encoders
    treat it as True), else the bool; nothing without a BatchInfo (padding then assumed)."""
    if info is None:
        return {}
    return {"padded": info.packing if info.packing is not None else info.padded}


def count_predictions(labels: object) -> int:
    """Labelled entries (not IGNORE_INDEX) of a label tensor or Picked, counted on the host: the
    denominator of the target's mean loss."""
    if isinstance(labels, Picked):
        labels = labels.labels
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a tensor or Picked, got {type(labels).__name__}")
    if labels.dim() == 3:  # bilm (B, T, 2): its loss is the sum of two means over the same positions
        labels = labels[..., 0]
    return int((labels != IGNORE_INDEX).sum())


def _length(instance: dict) -> int:
    """Positions up to the last non-padding one (seg > 0)."""
    nonpad = np.flatnonzero(np.asarray(instance["seg"]) > 0)
    return int(nonpad[-1]) + 1 if len(nonpad) else 0


def pick_positions(labels: torch.Tensor, rows: Optional[int] = None, packing: Optional[Packing] = None) -> Picked:
    """(B, T) labels with IGNORE_INDEX where nothing is predicted -> Picked with `rows` entries
    (default: exactly the labelled count), and with the entries' rows among the packed tokens when the
    batch's `packing` is given.  Host-side (CPU tensors).  ValueError when more positions are labelled
    than `rows`, or a label sits on padding while packing."""
    flat = labels.reshape(-1)
    index = torch.nonzero(flat != IGNORE_INDEX).reshape(-1)
    count = int(index.numel())
    rows = count if rows is None else rows
    if count > rows:
        raise ValueError(f"{count} labelled positions in the batch, more than the bound of {rows}")
    out_index = torch.zeros(rows, dtype=torch.long)
    out_labels = torch.full((rows,), IGNORE_INDEX, dtype=torch.long)
    out_index[:count] = index
    out_labels[:count] = flat[index]
    if packing is None:
        return Picked(out_index, out_labels)
    return Picked(out_index, out_labels, packed_rows(out_index, packing, valid=out_labels != IGNORE_INDEX))


def collate(instances: Sequence[dict], pad_id: int = 0, pad_to: Optional[int] = None,
            picked: Optional[Mapping[str, int]] = None) -> dict:
    """[{"src": (T_i,), "seg": (T_i,), "tgt": {name: () | (T_i,) | (T_i, 2)}}] ->
    {"src": (B, T), "seg": (B, T), "tgt": {name: (B,) | (B, T) | (B, T, 2) | Picked}, "info": BatchInfo},
    tensors int64; BatchInfo carries the batch's Packing (the real tokens' places, for the unpadded
    path), and Picked targets their packed rows.

    T = pad_to, or the batch's longest non-padding length (PretrainDataset instances come padded
    to seq_length; the all-padding columns are dropped).  Shorter rows are padded with pad_id
    (src), 0 (seg) and -100 (labels); padding beyond T is cut, real tokens never (ValueError).
    picked: target name -> the most labelled positions one instance can have; those targets' labels
    come as `Picked` with B x that many rows (a static shape: the MLM's masked positions).
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
    tgt: dict = {}
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
    packing = packing_of(seg)
    for name, per_instance in (picked or {}).items():
        if name in tgt:
            tgt[name] = pick_positions(tgt[name], B * per_instance, packing)
    info = batch_info(seg, {name: count_predictions(labels) for name, labels in tgt.items() if name not in INPUTS},
                      packing)
    return {"src": src, "seg": seg, "tgt": tgt, "info": info}
