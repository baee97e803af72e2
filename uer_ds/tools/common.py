"""What the model tools share: checking a model against its tokenizer, reading input lines (every line,
by uer_ds.textfile's rules, so outputs stay aligned with the input), batching, turning tokens back
into text, and writing outputs whole.  Errors about a line name it as file:line."""
from __future__ import annotations

import os
from typing import Iterator, Sequence, Union

import torch

from uer_ds import textfile
from uer_ds.tokenizers import Tokenizer
from uer_ds.tokenizers.bert import is_cjk, is_punctuation

PathLike = Union[str, os.PathLike]


def check_model_for(model, tokenizer: Tokenizer, need_target: Union[None, str, tuple[str, ...]] = None,
                    path: PathLike = "the model"):
    """`model` (loaded by the resolver, uer_ds.convert.resolve) checked against the tokenizer's vocabulary
    and, if given, for a target it must have (a tuple: one of them); returned.  ValueError names the path
    and what is missing."""
    if model.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"{path}: the model's vocab_size is {model.config.vocab_size} but the vocabulary "
                         f"{tokenizer.vocab.source} has {tokenizer.vocab_size} entries; give the vocabulary it was "
                         "trained with")
    wanted = (need_target,) if isinstance(need_target, str) else need_target or ()
    if wanted and not any(name in model.target for name in wanted):
        raise ValueError(f"{path}: the model has targets {list(model.target) or 'none'}; this tool needs its "
                         + " or ".join(f"'{name}'" for name in wanted) + " head")
    return model


def read_lines(path: PathLike) -> list[tuple[str, str]]:
    """("file:line", text) for every line of a UTF-8 input file, blank lines included, so that output
    row k is input line k.  Lines end at '\n' only and a BOM is removed (uer_ds.textfile)."""
    lines = textfile.read_lines(path, "test_path")
    if not lines:
        raise ValueError(f"{path}: empty file: the tools read one item per line")
    return [(f"{path}:{number}", line) for number, line in enumerate(lines, 1)]


def require_text(lines: Sequence[tuple[str, str]], rule: str) -> None:
    """For tools whose output has no row for an empty line: a blank line is an error naming it."""
    for where, text in lines:
        if textfile.is_blank(text):
            raise ValueError(f"{where}: empty line: {rule}")


def blank_rows(lines: Sequence[tuple[str, str]]) -> list[int]:
    """Indices of the blank lines (tools that keep one output row per line give them an empty row)."""
    return [i for i, (_, text) in enumerate(lines) if textfile.is_blank(text)]


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (src, seg) of shape (B, T): seg 1 on tokens, 0 on padding (UER's convention)."""
    width = max(len(r) for r in rows)
    src = torch.full((len(rows), width), pad_id, dtype=torch.long)
    seg = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        src[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        seg[i, : len(row)] = 1
    return src, seg


def batches(items: Sequence, size: int) -> Iterator[Sequence]:
    if size <= 0:
        raise ValueError(f"batch_size has value {size}: must be positive")
    for start in range(0, len(items), size):
        yield items[start: start + size]


def detokenize(tokenizer: Tokenizer, tokens: Sequence[str]) -> str:
    """Tokens back to text: SentencePiece decodes; WordPiece glues `##` pieces, CJK characters and
    punctuation to their neighbours and spaces other words; char joins; space spaces."""
    if tokenizer.kind in ("spm", "char", "space"):
        return tokenizer.convert_tokens_to_string(list(tokens))
    out = ""
    for token in tokens:
        if token.startswith("##"):
            out += token[2:]
            continue
        last = out[-1] if out else " "
        wide = ord(last) > 0x2000 and is_punctuation(last)  # full-width punctuation: "。", "，", "》"
        glued = not out or is_cjk(ord(last)) or wide or last in "([{" or is_cjk(ord(token[0])) or \
            (len(token) == 1 and is_punctuation(token) and token not in "([{")
        out += token if glued else " " + token
    return out


def pad_id_of(tokenizer: Tokenizer) -> int:
    pad = tokenizer.pad_id
    return 0 if pad is None else pad
