"""Subword features (UER-py's --subword_type char --sub_vocab_path V): each word is also encoded from
its characters, and the result is added to its word embedding, so an out-of-vocabulary word keeps a
representation of its own.

How the characters travel (host side, no tokenizer on the device):
  - `SubwordTable(vocab, sub_vocab)` maps every word id to a row of character ids (sub-vocabulary ids;
    -1 where a word has no more characters), `width` columns;
  - with subwords attached (`WordTokenizer(..., subwords=table)`), the tokenizer gives a word outside the
    vocabulary an *extended id* >= vocab_size, one per distinct word, and the table remembers its
    characters;
  - `table.complete(batch)` (the fine-tuning/inference collate step, on the host) adds
    batch["tgt"]["sub"] = the rows of batch["src"] (B, T, width) and turns extended ids into [UNK], so the
    model only ever sees ids < vocab_size; pre-training instances get the rows of their (masked) src from
    the same table (a masked word has [MASK]'s characters: nothing leaks);
  - the model reads tgt["sub"] (`Model.forward`), as heads read other non-label inputs from tgt.
"""
from __future__ import annotations

import hashlib
from typing import Optional

import numpy as np
import torch

from uer_ds.registry import SUBWORD_TYPES  # noqa: F401 (re-exported: the names live with the other registries)
from uer_ds.tokenizers.vocab import Vocab

MAX_WIDTH = 16  # characters kept per word (longer words are cut; Chinese words are 1-4 characters)
NO_CHAR = -1


class SubwordTable:
    """Word id -> character ids (sub-vocabulary ids), for the words of `vocab` and for the
    out-of-vocabulary words met since (extended ids vocab_size, vocab_size + 1, ...).

    A special token of the word vocabulary ([CLS], [MASK], ...) that is also in the sub-vocabulary is one
    character: itself; the padding token has none.  A character outside the sub-vocabulary is its [UNK].
    Raises ValueError when the sub-vocabulary has no [UNK].
    """

    def __init__(self, vocab: Vocab, sub_vocab: Vocab, pad_token: Optional[str] = "[PAD]",
                 unk_token: str = "[UNK]", width: int = MAX_WIDTH) -> None:
        if unk_token not in sub_vocab:
            raise ValueError(f"{sub_vocab.source}: the sub-vocabulary lacks {unk_token}, which characters outside "
                             "it map to")
        self.vocab, self.sub_vocab, self.width = vocab, sub_vocab, width
        self.sub_unk = sub_vocab.get(unk_token)
        self.pad_token = pad_token
        self.unk_id = vocab.get(unk_token)
        self.oov_words: list[str] = []
        self._oov_ids: dict[str, int] = {}
        self._oov_rows: list[np.ndarray] = []
        self._oov_table: Optional[np.ndarray] = None  # np.stack(_oov_rows), rebuilt after a new word
        self.rows_table = np.stack([self.chars(t) for t in vocab.id_to_token])  # (V, width)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def sub_vocab_size(self) -> int:
        return len(self.sub_vocab)

    def chars(self, word: str) -> np.ndarray:
        """(width,) int64: the word's character ids, NO_CHAR after its last (and for the padding token)."""
        row = np.full(self.width, NO_CHAR, np.int64)
        if word == self.pad_token:
            return row
        if word in self.sub_vocab:
            ids = [self.sub_vocab.get(word)]
        else:
            ids = [self.sub_vocab.get(ch, self.sub_unk) for ch in word]
        row[: min(len(ids), self.width)] = ids[: self.width]
        return row

    def word_id(self, word: str) -> int:
        """The vocabulary id, or an extended id (>= vocab_size) for a word outside it."""
        found = self.vocab.get(word)
        if found is not None:
            return found
        if word not in self._oov_ids:
            self._oov_ids[word] = len(self.vocab) + len(self.oov_words)
            self.oov_words.append(word)
            self._oov_rows.append(self.chars(word))
            self._oov_table = None
        return self._oov_ids[word]

    def word_of(self, i: int) -> str:
        return self.vocab.id_to_token[i] if i < len(self.vocab) else self.oov_words[i - len(self.vocab)]

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """ids (...) int (vocabulary or extended ids) -> character ids (..., width) int64."""
        ids = np.asarray(ids, dtype=np.int64)
        known = ids < len(self.vocab)
        if known.all():
            return self.rows_table[ids]
        if self._oov_table is None:
            self._oov_table = np.stack(self._oov_rows)
        out = np.empty(ids.shape + (self.width,), np.int64)
        out[known] = self.rows_table[ids[known]]
        out[~known] = self._oov_table[ids[~known] - len(self.vocab)]
        return out

    def in_vocab(self, ids: np.ndarray) -> np.ndarray:
        """ids with every extended id replaced by [UNK] (what the word embedding can look up)."""
        ids = np.asarray(ids, dtype=np.int64)
        return np.where(ids < len(self.vocab), ids, self.unk_id if self.unk_id is not None else 0)

    def complete(self, batch: dict) -> dict:
        """A collated batch {"src": (B, T), "seg", "tgt": {...}} -> the same with tgt["sub"] (B, T, width)
        and src in the vocabulary.  Host-side (numpy), before the batch goes to the device."""
        src = batch["src"].numpy()
        tgt = dict(batch.get("tgt") or {})
        tgt["sub"] = torch.from_numpy(self.rows(src))
        return dict(batch, src=torch.from_numpy(self.in_vocab(src)), tgt=tgt)

    def identity(self) -> dict:
        digest = hashlib.sha256("\n".join(self.sub_vocab.id_to_token).encode("utf-8")).hexdigest()
        return {"subword_type": "char", "sub_vocab_size": len(self.sub_vocab), "sub_vocab_sha256": digest}


def check_subword_tokenizer(kind: str) -> None:
    """Subword features are for word-level tokenizers: each token a word whose characters mean something."""
    if kind != "word":
        raise ValueError(f"--sub_vocab_path: subword features encode each word from its characters and need "
                         f"--tokenizer word, not '{kind}'")
