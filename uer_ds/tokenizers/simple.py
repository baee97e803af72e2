"""Character and whitespace tokenizers (UER-py's `char` and `space`)."""
from __future__ import annotations

from typing import Optional

from uer_ds.tokenizers.base import Tokenizer
from uer_ds.tokenizers.vocab import Vocab


class CharTokenizer(Tokenizer):
    """One token per character; whitespace separates and is dropped (UER-py kept spaces as [UNK])."""

    kind = "char"

    def __init__(self, vocab: Vocab, do_lower_case: bool = False,
                 special_tokens: Optional[dict[str, str]] = None) -> None:
        super().__init__(vocab, special_tokens)
        self.do_lower_case = do_lower_case

    def tokenize(self, text: str) -> list[str]:
        if self.do_lower_case:
            text = text.lower()
        return [ch for ch in text if not ch.isspace()]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(tokens)

    def _identity_extra(self) -> dict:
        return {"do_lower_case": self.do_lower_case}


class SpaceTokenizer(Tokenizer):
    """Tokens are the whitespace-separated fields (pre-segmented text, e.g. words joined by spaces)."""

    kind = "space"

    def __init__(self, vocab: Vocab, do_lower_case: bool = False,
                 special_tokens: Optional[dict[str, str]] = None) -> None:
        super().__init__(vocab, special_tokens)
        self.do_lower_case = do_lower_case

    def tokenize(self, text: str) -> list[str]:
        return (text.lower() if self.do_lower_case else text).split()

    def _identity_extra(self) -> dict:
        return {"do_lower_case": self.do_lower_case}
