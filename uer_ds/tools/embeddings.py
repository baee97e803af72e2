"""A model's word embedding matrix with its vocabulary (UER-py's scripts/extract_embeddings.py).

text: word2vec's text format, the first line "<rows> <width>", then one "<token> <v_1> ... <v_width>"
line per vocabulary entry in id order, each value with 9 significant digits (float32 round-trips
exactly); white space inside a token is written as \\uXXXX.  npy: the (rows, width) float32 matrix as
OUT.npy and the tokens, one per line in id order, as OUT.vocab.txt.  Files are written whole
(temporary names, then renamed).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

from uer_ds.convert.rules import new_file
from uer_ds.tokenizers import Tokenizer

PathLike = Union[str, os.PathLike]
FORMATS = ("text", "npy")


def text_token(token: str) -> str:
    """The token as the text format writes it: white space inside it (Chinese BERT's vocabulary holds
    U+2028) escaped as \\uXXXX, so that splitting a line at white space finds the token whole."""
    return "".join(f"\\u{ord(ch):04x}" if ch.isspace() else ch for ch in token)


def embedding_matrix(model) -> np.ndarray:
    """(vocab_size, emb_size) float32: the word embedding (the first stream's for a dual model)."""
    return model.embedding.word_embedding().weight.detach().float().cpu().numpy()


def write_embeddings(matrix: np.ndarray, tokenizer: Tokenizer, output: PathLike, fmt: str) -> list[Path]:
    """Write `matrix` with the tokenizer's tokens in `fmt`; returns the files written."""
    tokens = tokenizer.vocab.id_to_token
    if len(tokens) != matrix.shape[0]:
        raise ValueError(f"the embedding has {matrix.shape[0]} rows, the vocabulary {tokenizer.vocab.source} "
                         f"{len(tokens)} entries")
    output = Path(output)
    if fmt == "npy":
        stem = output.with_suffix("") if output.suffix == ".npy" else output
        files = [stem.with_name(stem.name + ".npy"), stem.with_name(stem.name + ".vocab.txt")]
        with new_file(files[0], overwrite=True) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, matrix.astype(np.float32))
        with new_file(files[1], overwrite=True) as tmp:
            tmp.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
        return files
    if "" in tokens:
        raise ValueError(f"{tokenizer.vocab.source}: line {tokens.index('') + 1} is an empty token, which the text "
                         "format cannot hold; use --format npy")
    with new_file(output, overwrite=True) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(f"{matrix.shape[0]} {matrix.shape[1]}\n")
            for token, row in zip(tokens, matrix):
                f.write(text_token(token) + " " + " ".join(format(float(v), ".9g") for v in row) + "\n")
    return [output]
