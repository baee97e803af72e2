"""Feature extraction (UER-py's scripts/extract_features.py): each line -> [CLS] + tokens -> the last
hidden layer, pooled to one vector (first, mean, max, last) or kept per token (none).

Pooled vectors are one (N, H) array, written as .npy (numpy) or .pt (torch) by the output's suffix;
per-token vectors differ in length per line, so they are a list of (T_i, H) tensors in a .pt file.
Row i is line i + 1 of the input: a blank line gets a row of NaN (pooled) or a (0, H) tensor (none).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
import torch
from tqdm import tqdm

from uer_ds.convert.rules import new_file
from uer_ds.models.targets import pool
from uer_ds.tokenizers import Tokenizer
from uer_ds.tools.common import batches, blank_rows, pad_batch, pad_id_of

POOLINGS = ("first", "mean", "max", "last", "none")
SUFFIXES = (".npy", ".pt")


def encode_lines(tokenizer: Tokenizer, lines: list[tuple[str, str]], seq_length: int) -> list[list[int]]:
    cls = tokenizer.require_special("cls")["cls"]
    rows = [([cls] + tokenizer.encode(text))[:seq_length] for _, text in lines]
    return rows


@torch.no_grad()
def extract(model, tokenizer: Tokenizer, lines: list[tuple[str, str]], pooling: str = "first",
            seq_length: int = 128, batch_size: int = 32) -> Union[torch.Tensor, list[torch.Tensor]]:
    """(N, H) float32 pooled vectors, or with pooling 'none' a list of N (T_i, H) per-token vectors, for
    lines (where, text) as tools.common.read_lines gives them; blank lines give NaN rows / (0, H)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling has value '{pooling}': must be one of {', '.join(POOLINGS)}")
    rows = encode_lines(tokenizer, lines, seq_length)
    out: list[torch.Tensor] = []
    for chunk in tqdm(list(batches(rows, batch_size)), desc="features", disable=None):
        src, seg = pad_batch(chunk, pad_id_of(tokenizer))
        hidden = model.encode(src, seg).float()  # (B, T, H)
        if pooling == "none":
            out += [hidden[i, : len(row)].clone() for i, row in enumerate(chunk)]
        else:
            out.append(pool(hidden, seg, pooling))
    blank = blank_rows(lines)
    if pooling == "none":
        for i in blank:
            out[i] = out[i][:0]
        return out
    features = torch.cat(out, dim=0)
    features[blank] = float("nan")
    return features


def save_features(features: Union[torch.Tensor, list[torch.Tensor]], path: Union[str, os.PathLike]) -> None:
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ValueError(f"prediction_path '{path}': the suffix must be .npy or .pt (it picks the format)")
    if isinstance(features, list) and path.suffix == ".npy":
        raise ValueError(f"prediction_path '{path}': per-token vectors (pooling none) differ in length per line; "
                         "write them to a .pt file")
    with new_file(path, overwrite=True) as tmp:
        if path.suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, features.numpy())
        else:
            torch.save(features, tmp)
