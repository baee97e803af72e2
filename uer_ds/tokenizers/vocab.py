"""Vocabulary files: one token per line, the line number is the id (BERT / UER-py format)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from uer_ds.textfile import read_lines
from typing import Union


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

    def sha256(self) -> str:
        return hashlib.sha256("\n".join(self.id_to_token).encode("utf-8")).hexdigest()

    def save(self, path: Union[str, os.PathLike]) -> None:
        Path(path).write_text("".join(t + "\n" for t in self.id_to_token), encoding="utf-8")
