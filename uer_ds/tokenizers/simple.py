"""Character and whitespace tokenizers (UER-py's `char` and `space`)."""
from __future__ import annotations

from typing import Optional

from uer_ds.tokenizers.base import Span, Tokenizer, char_alignment
from uer_ds.tokenizers.vocab import Vocab


def char_tokens(text: str) -> list[str]:
    """The char tokenizer's rule: every character that is not white space (str.isspace)."""
    return [ch for ch in text if not ch.isspace()]


def space_tokens(text: str) -> list[str]:
    """The space tokenizer's rule: the fields between runs of white space (str.split, as the C
    extension does; UER-py split at single ASCII spaces)."""
    return text.split()


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
        return char_tokens(text)

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[Span]]:
        """See Tokenizer.encode_with_offsets: each token spans the character it came from."""
        lowered, index = lowered_with_alignment(text, self.do_lower_case)
        kept = [(ch, i) for i, ch in enumerate(lowered) if not ch.isspace()]
        spans = [(index[i], index[i] + 1) if index is not None else (0, len(text)) for _, i in kept]
        return self.convert_tokens_to_ids([ch for ch, _ in kept]), spans

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
        return space_tokens(text.lower() if self.do_lower_case else text)

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[Span]]:
        """See Tokenizer.encode_with_offsets: each token spans its field (white space as str.split)."""
        lowered, index = lowered_with_alignment(text, self.do_lower_case)
        tokens, spans, start = [], [], None
        for i, ch in enumerate(lowered + " "):
            if not ch.isspace():
                start = i if start is None else start
            elif start is not None:
                tokens.append(lowered[start:i])
                spans.append((index[start], index[i - 1] + 1) if index is not None else (0, len(text)))
                start = None
        return self.convert_tokens_to_ids(tokens), spans

    def _identity_extra(self) -> dict:
        return {"do_lower_case": self.do_lower_case}


def lowered_with_alignment(text: str, lower: bool) -> tuple[str, Optional[list[int]]]:
    """(text lower-cased when asked, index of each of its characters in text; None if unalignable)."""
    if not lower:
        return text, list(range(len(text)))
    lowered = text.lower()
    return lowered, char_alignment(text, lowered, str.lower)
