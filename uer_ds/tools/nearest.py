"""Nearest words by cosine similarity (UER-py's scripts/topn_words_indep.py and topn_words_dep.py).

Context-independent: a word's row of the word embedding against every other row.
Context-dependent: the last hidden state at the word's position in a sentence, against the hidden
states at that position when each candidate word takes its place (one forward pass per candidate,
batched).  The word itself is never listed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from uer_ds.tokenizers import Tokenizer
from uer_ds.tools.common import batches


@dataclass
class Neighbours:
    word: str
    context: Optional[str]
    found: list[tuple[str, float]]  # (word, cosine similarity), most similar first


def _word_id(tokenizer: Tokenizer, word: str, where: str) -> int:
    word_id = tokenizer.vocab.get(word)
    if word_id is None:
        raise ValueError(f"{where}: '{word}' is not a token of the vocabulary {tokenizer.vocab.source}")
    return word_id


def top_by_cosine(query: torch.Tensor, candidates: torch.Tensor, exclude: int, topn: int) -> list[tuple[int, float]]:
    """Indices and similarities of the topn rows of candidates (N, H) nearest to query (H,); the row
    `exclude` (the query word itself; -1: none) is never listed."""
    sims = F.cosine_similarity(query.float().unsqueeze(0), candidates.float(), dim=-1)  # (N,)
    if exclude >= 0:
        sims[exclude] = float("-inf")
    top = sims.topk(min(topn, len(sims) - (exclude >= 0)))
    return list(zip(top.indices.tolist(), top.values.tolist()))


@torch.no_grad()
def nearest_independent(model, tokenizer: Tokenizer, words: list[tuple[str, str]], topn: int = 10,
                        candidates: Optional[Sequence[str]] = None) -> list[Neighbours]:
    """words: (where, word), where naming the input line ("file:line") for errors; candidates: the words
    to rank (default: the whole vocabulary)."""
    table = model.embedding.word_embedding().weight  # (V, E)
    if candidates is None:
        cand_ids = torch.arange(table.shape[0])
    else:
        cand_ids = torch.tensor([_word_id(tokenizer, w, "candidate vocabulary") for w in candidates])
    out = []
    for where, word in words:
        word_id = _word_id(tokenizer, word, where)
        position = (cand_ids == word_id).nonzero()
        found = top_by_cosine(table[word_id], table[cand_ids], int(position[0]) if len(position) else -1, topn)
        out.append(Neighbours(word, None, [(tokenizer.vocab.id_to_token[int(cand_ids[i])], s) for i, s in found]))
    return out


@torch.no_grad()
def nearest_dependent(model, tokenizer: Tokenizer, items: list[tuple[str, str, str]], topn: int = 10,
                      candidates: Optional[Sequence[str]] = None, batch_size: int = 64,
                      seq_length: int = 128) -> list[Neighbours]:
    """items: (where, word, context), where naming the input line ("file:line") for errors.
    candidates: words to try (default: the vocabulary without its special tokens)."""
    specials = {t for t in tokenizer.special_tokens.values() if t is not None}
    if candidates is None:
        candidates = [t for t in tokenizer.vocab.id_to_token if t not in specials]
    words = list(candidates)
    cand_ids = torch.tensor([_word_id(tokenizer, w, "candidate vocabulary") for w in words])
    cls, sep = tokenizer.special_id("cls"), tokenizer.special_id("sep")
    out = []
    for where, word, context in items:
        word_id = _word_id(tokenizer, word, where)
        ids = ([cls] if cls is not None else []) + tokenizer.encode(context)
        ids = ids[: seq_length - 1] + ([sep] if sep is not None else [])
        if word_id not in ids:
            raise ValueError(f"{where}: the word '{word}' is not a token of its context (as tokenized, "
                             f"within {seq_length} tokens)")
        position = ids.index(word_id)
        src = torch.tensor([ids])
        seg = torch.ones_like(src)
        query = model.encode(src, seg)[0, position]  # (H,)
        vectors = []
        for chunk in tqdm(list(batches(cand_ids, batch_size)), desc=where, disable=None):
            batch = src.repeat(len(chunk), 1)
            batch[:, position] = chunk
            vectors.append(model.encode(batch, seg.repeat(len(chunk), 1))[:, position])
        exclude = words.index(word) if word in words else -1
        sims = F.cosine_similarity(query.float().unsqueeze(0), torch.cat(vectors).float(), dim=-1)
        if exclude >= 0:
            sims[exclude] = float("-inf")
        top = sims.topk(min(topn, len(words) - (exclude >= 0)))
        found = [(words[i], s) for i, s in zip(top.indices.tolist(), top.values.tolist())]
        out.append(Neighbours(word, context, found))
    return out


def format_neighbours(results: list[Neighbours]) -> str:
    lines = []
    for r in results:
        if r.context is not None:
            lines.append(f"Original sentence: {r.context}")
        lines.append(f"Target word: {r.word}")
        lines += [f"{w}\t{s:.4f}" for w, s in r.found]
        lines.append("")
    return "\n".join(lines) + "\n"
