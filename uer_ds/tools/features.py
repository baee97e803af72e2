"""Feature extraction (UER-py's scripts/extract_features.py): each line -> [CLS] + tokens -> the last
hidden layer, pooled to one vector (first, mean, max, last) or kept per token (none).

Pooled vectors are one (N, H) array, written as .npy (numpy) or .pt (torch) by the output's suffix;
per-token vectors differ in length per line, so they are a list of (T_i, H) tensors in a .pt file.
Row i is line i + 1 of the input: a blank line gets a row of NaN (pooled) or a (0, H) tensor (none).
A task TSV (a header naming text_a, as `uer-ds finetune classifier` reads) gives one row per data row:
its text_a (and text_b) as the classifier's input, [CLS] a [SEP] (b [SEP]) with segments 1 and 2; the
header and the other columns (label, ...) are not text (`read_task_tsv`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from tqdm import tqdm

from uer_ds.convert.rules import new_file
from uer_ds.models.targets import pool
from uer_ds.tokenizers import Tokenizer
from uer_ds.tools.common import blank_rows, pad_batch, pad_id_of

POOLINGS = ("first", "mean", "max", "last", "none")
SUFFIXES = (".npy", ".pt")


def encode_lines(tokenizer: Tokenizer, lines: list[tuple[str, str]], seq_length: int) -> list[list[int]]:
    cls = tokenizer.require_special("cls")["cls"]
    rows = [([cls] + tokenizer.encode(text))[:seq_length] for _, text in lines]
    return rows


def is_task_tsv(lines: list[tuple[str, str]]) -> bool:
    """Is the input a task TSV: a first line whose tab-separated fields name text_a?"""
    return "text_a" in [field.strip() for field in lines[0][1].split("\t")]


def read_task_tsv(path: str, tokenizer: Tokenizer, seq_length: int) -> tuple[list[tuple[str, str]], list, list[str]]:
    """(rows (where, text_a), their (src, seg) as the classifier encodes them, the text columns read) of a
    task TSV; a row without text is an error naming file:line (uer_ds.tasks.data's rules)."""
    from uer_ds.tasks.data import encode_texts, read_tsv, text_column

    header, rows = read_tsv(path, ["text_a"], ["text_b"])
    columns = [c for c in ("text_a", "text_b") if c in header]
    texts = [[text_column(row, c) for c in columns] for row in rows]
    encoded = [encode_texts(tokenizer, t, seq_length) for t in texts]
    return [(row.where, t[0]) for row, t in zip(rows, texts)], encoded, columns


@torch.no_grad()
def extract(model, tokenizer: Tokenizer, lines: list[tuple[str, str]], pooling: str = "first",
            seq_length: int = 128, batch_size: int = 32,
            encoded: Optional[list[tuple[list[int], list[int]]]] = None) -> Union[torch.Tensor, list[torch.Tensor]]:
    """(N, H) float32 pooled vectors, or with pooling 'none' a list of N (T_i, H) per-token vectors, for
    lines (where, text) as tools.common.read_lines gives them; blank lines give NaN rows / (0, H).
    `encoded`: each line's (src, seg) already made (read_task_tsv's) instead of [CLS] + its tokens."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling has value '{pooling}': must be one of {', '.join(POOLINGS)}")
    if encoded is None:
        encoded = [(row, [1] * len(row)) for row in encode_lines(tokenizer, lines, seq_length)]
    if batch_size <= 0:
        raise ValueError(f"batch_size has value {batch_size}: must be positive")
    rows = [src for src, _ in encoded]
    out: list[torch.Tensor] = []
    for start in tqdm(range(0, len(rows), batch_size), desc="features", disable=None):
        chunk = rows[start: start + batch_size]
        src, seg = pad_batch(chunk, pad_id_of(tokenizer))
        for i, (_, segments) in enumerate(encoded[start: start + batch_size]):
            seg[i, : len(segments)] = torch.tensor(segments, dtype=torch.long)
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
