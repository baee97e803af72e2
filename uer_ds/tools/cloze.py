"""Cloze test (UER-py's scripts/cloze_test.py): mask a position, list the MLM head's top-n tokens.

A line of plain text gets one random position masked (seeded), and its token is the correct answer; a
line that already holds `[MASK]` is predicted at each of them.  Output, per line, as UER-py writes it:
the sentence with [MASK], `Predicted answer: t1 t2 ...` (one line per mask), `Correct answer: t`
(masked lines only), a blank line.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Optional

import torch
from tqdm import tqdm

from uer_ds.tokenizers import Tokenizer
from uer_ds.tools.common import batches, detokenize, pad_batch, pad_id_of, require_text

MASK = "[MASK]"


@dataclass
class ClozeItem:
    line: str  # "file:line" (or whatever the caller's lines name themselves)
    ids: list[int]  # [CLS] tokens [SEP], masks in place
    positions: list[int]
    answers: list[Optional[int]]  # the masked-out ids (None where the input had [MASK])
    predictions: list[list[tuple[int, float]]] = field(default_factory=list)  # per position: (id, probability)


def prepare(tokenizer: Tokenizer, where: str, text: str, seq_length: int, rng: random.Random) -> ClozeItem:
    special = tokenizer.require_special("cls", "sep", "mask")
    pieces = text.split(MASK)
    ids = [special["cls"]]
    positions = []
    for i, piece in enumerate(pieces):
        if i:
            positions.append(len(ids))
            ids.append(special["mask"])
        ids += tokenizer.encode(piece)
    ids = ids[: seq_length - 1] + [special["sep"]]
    if positions:
        if positions[-1] >= len(ids) - 1:
            raise ValueError(f"{where}: a [MASK] lies beyond seq_length ({seq_length}) tokens")
        return ClozeItem(where, ids, positions, [None] * len(positions))
    if len(ids) < 3:
        raise ValueError(f"{where}: no token to mask")
    position = rng.randint(1, len(ids) - 2)  # a token of the line, never [CLS] or [SEP]
    answer = ids[position]
    ids[position] = special["mask"]
    return ClozeItem(where, ids, [position], [answer])


@torch.no_grad()
def cloze(model, tokenizer: Tokenizer, lines: list[tuple[str, str]], topn: int = 10, seq_length: int = 128,
          batch_size: int = 32, seed: int = 7) -> list[ClozeItem]:
    """lines: (where, text) as tools.common.read_lines gives them; a blank line is an error naming it."""
    if topn <= 0:
        raise ValueError(f"topn has value {topn}: must be positive")
    require_text(lines, "every line is a sentence to fill in")
    rng = random.Random(seed)
    items = [prepare(tokenizer, n, text, seq_length, rng) for n, text in lines]
    head = model.target["mlm"]
    for chunk in tqdm(list(batches(items, batch_size)), desc="cloze", disable=None):
        src, seg = pad_batch([item.ids for item in chunk], pad_id_of(tokenizer))
        hidden = model.encode(src, seg)  # (B, T, H)
        for row, item in enumerate(chunk):
            probs = torch.softmax(head.logits(hidden[row, item.positions]).float(), dim=-1)  # (masks, V)
            top = probs.topk(min(topn, probs.shape[-1]), dim=-1)
            item.predictions = [list(zip(i.tolist(), p.tolist())) for i, p in zip(top.indices, top.values)]
    return items


def format_items(tokenizer: Tokenizer, items: list[ClozeItem]) -> str:
    out = []
    for item in items:
        tokens = tokenizer.convert_ids_to_tokens(item.ids[1:-1])
        out.append(detokenize(tokenizer, tokens))
        for predictions in item.predictions:
            out.append("Predicted answer: " + " ".join(tokenizer.convert_ids_to_tokens([i for i, _ in predictions])))
        for answer in item.answers:
            if answer is not None:
                out.append("Correct answer: " + tokenizer.convert_ids_to_tokens([answer])[0])
        out.append("")
    return "\n".join(out) + "\n"
