"""Vocabulary files: one token per line, the line number is the id (BERT / UER-py format)."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from uer_ds.textfile import read_lines
from typing import Optional, Union


class Vocab:
    def __init__(self, tokens: list[str], source: str = "<list>") -> None:
        if not tokens:
            raise ValueError(f"{source}: the vocabulary is empty")
        self.source = source
        self.id_to_token = tokens
        self.token_to_id: dict[str, int] = {}
        for i, token in enumerate(tokens):
            self.token_to_id[token] = i  # the last occurrence of a duplicate wins, as in Hugging Face

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "Vocab":
        """One token per line, the whole line (uer_ds.textfile's rules: lines end at '\\n' only, so the
        Chinese vocabulary's U+2028 entries stay tokens; a BOM is removed, or '[PAD]' would be lost)."""
        return cls(read_lines(path, "vocab_path"), source=str(path))

    def __len__(self) -> int:
        return len(self.id_to_token)

    def __contains__(self, token: str) -> bool:
        return token in self.token_to_id

    def get(self, token: str, default: int | None = None) -> int | None:
        return self.token_to_id.get(token, default)

    def casing(self) -> "Casing":
        """Whether the vocabulary was made from cased or lower-cased text (see Casing)."""
        return Casing.of(self.id_to_token)

    def sha256(self) -> str:
        return hashlib.sha256("\n".join(self.id_to_token).encode("utf-8")).hexdigest()

    def save(self, path: Union[str, os.PathLike]) -> None:
        Path(path).write_text("".join(t + "\n" for t in self.id_to_token), encoding="utf-8")


# A vocabulary is cased when more than this share of its entries with letters have a capital: Google's
# cased English vocabulary has 32 %, GPT-2's 76 %; the uncased English and Chinese ones 2 entries in
# 27,000 and 3,900 ('ℝ', '<S>').
CASED_SHARE = 0.01


@dataclass(frozen=True)
class Casing:
    """Counts over a vocabulary's entries ([...] and <...> special tokens left out, '##' and SentencePiece's
    '\u2581' removed): `letters` have a cased letter, `capitals` an upper-case one (`example`: the first)."""

    letters: int
    capitals: int
    example: str = ""

    @classmethod
    def of(cls, tokens: list[str]) -> "Casing":
        letters = capitals = 0
        example = ""
        for token in tokens:
            if len(token) > 2 and token[0] + token[-1] in ("[]", "<>"):
                continue
            word = token.removeprefix("##").replace("\u2581", "")
            if any(ch.isupper() or ch.islower() for ch in word):
                letters += 1
                if any(ch.isupper() for ch in word):
                    capitals += 1
                    example = word if not example or (len(example) < 3 <= len(word)) else example
        return cls(letters, capitals, example)

    @property
    def kind(self) -> Optional[str]:
        """'cased', 'uncased', or None when no entry has a cased letter (a Chinese-only vocabulary)."""
        if self.letters == 0:
            return None
        return "cased" if self.capitals > CASED_SHARE * self.letters else "uncased"

    def describe(self) -> str:
        if self.kind == "cased":
            return f"cased: {self.capitals:,} of its {self.letters:,} entries with letters have capitals, " \
                   f"e.g. '{self.example}'"
        return f"uncased: {self.capitals:,} of its {self.letters:,} entries with letters have capitals"
