"""The one tokenizer interface.

A tokenizer turns text into tokens and ids (`tokenize`, `encode`) and back (`decode`).  One optional
method, `encode_with_offsets`, gives each token's character span in the text: reading comprehension
(`uer-ds finetune cmrc`) maps gold answers to tokens and predicted tokens back to the context through
these spans, so it takes only tokenizers that implement it (`gives_offsets`).  A new tokenizer adds
itself to `uer_ds.tokenizers.TOKENIZERS` and, to serve MRC, implements that one method; the tests in
tests/tokenizers hold every registered tokenizer to its contract.
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Union

from uer_ds.tokenizers.vocab import Vocab

# Special-token roles and their BERT/UER-py spellings; a tokenizer maps each role to a token of its
# vocabulary, or to None where the vocabulary has no such token.
SPECIAL_TOKENS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}


Span = tuple[int, int]


class OffsetsUnsupported(ValueError):
    """The tokenizer cannot say which characters of the text each token came from."""


class Tokenizer:
    """text -> tokens -> ids and back.  Subclasses implement `tokenize` (and may override decoding),
    and, where they can, `encode_with_offsets`."""

    kind = "base"

    def __init__(self, vocab: Vocab, special_tokens: Optional[dict[str, str]] = None) -> None:
        self.vocab = vocab
        names = dict(SPECIAL_TOKENS, **(special_tokens or {}))
        self.special_tokens = {role: tok if tok in vocab else None for role, tok in names.items()}

    # ---- special tokens ----------------------------------------------------------------------
    def special_id(self, role: str) -> Optional[int]:
        token = self.special_tokens.get(role)
        return None if token is None else self.vocab.get(token)

    def require_special(self, *roles: str) -> dict[str, int]:
        """{role: id}; raises naming the vocabulary and the missing tokens."""
        missing = [SPECIAL_TOKENS.get(r, r) for r in roles if self.special_id(r) is None]
        if missing:
            raise ValueError(f"{self.vocab.source}: the vocabulary lacks special token(s) {', '.join(missing)}, "
                             "which this task needs")
        return {r: self.special_id(r) for r in roles}

    pad_id = property(lambda self: self.special_id("pad"))
    unk_id = property(lambda self: self.special_id("unk"))
    cls_id = property(lambda self: self.special_id("cls"))
    sep_id = property(lambda self: self.special_id("sep"))
    mask_id = property(lambda self: self.special_id("mask"))

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    # ---- conversion --------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        raise NotImplementedError

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        get, unk = self.vocab.token_to_id.get, self.unk_id
        ids = [get(t, unk) for t in tokens]
        if unk is None and None in ids:
            bad = next(t for t, i in zip(tokens, ids) if i is None)
            raise ValueError(f"token '{bad}' is not in {self.vocab.source}, which has no [UNK]")
        return ids

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        table = self.vocab.id_to_token
        return [table[i] for i in ids]

    def encode(self, text: str) -> list[int]:
        return self.convert_tokens_to_ids(self.tokenize(text))

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[Span]]:
        """(ids, spans): ids equal to `encode(text)`, and for each token the span [start, end) of the
        characters of `text` it was made from (Python string indices, not bytes).

        Contract (checked for every registered tokenizer by tests/tokenizers/test_offsets.py):
        - `ids == self.encode(text)`, always: the offsets never change the tokenization;
        - 0 <= start < end <= len(text); starts and ends never decrease from one token to the next;
        - a token covers every character normalisation made it from (lower-casing, accents, characters
          the tokenizer drops inside a word: 'infor\u00admation' -> one token over all 12 characters);
        - pieces of one word (WordPiece '##', SentencePiece) get their own spans where the pieces line
          up with characters; where they cannot (an unknown word, a normalisation that changes the
          length), each piece spans the whole word.
        Tokenizers that cannot give spans keep this default, which raises OffsetsUnsupported.
        """
        raise OffsetsUnsupported(f"tokenizer '{self.kind}' cannot give the character offsets of its tokens")

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return " ".join(tokens)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        tokens = self.convert_ids_to_tokens(ids)
        if skip_special_tokens:
            specials = {t for t in self.special_tokens.values() if t is not None} - {self.special_tokens["unk"]}
            tokens = [t for t in tokens if t not in specials]
        return self.convert_tokens_to_string(tokens)

    def identity(self) -> dict:
        """What a dataset or checkpoint records to tell whether a tokenizer is the same one."""
        return {"kind": self.kind, "vocab_size": self.vocab_size, "vocab_sha256": self.vocab.sha256(),
                **self._identity_extra()}

    def _identity_extra(self) -> dict:
        return {}


def gives_offsets(tokenizer: Union[Tokenizer, type]) -> bool:
    """Whether a tokenizer (instance or class) implements encode_with_offsets."""
    cls = tokenizer if isinstance(tokenizer, type) else type(tokenizer)
    return cls.encode_with_offsets is not Tokenizer.encode_with_offsets


def char_alignment(text: str, normalized: str, per_char: Callable[[str], str]) -> Optional[list[int]]:
    """For each character of `normalized` (a normalisation of the whole `text`), the index of the
    character of `text` it came from, found by normalising one character at a time; None where that
    gives a different length than normalising the whole (then no character-exact alignment exists)."""
    index: list[int] = []
    for i, ch in enumerate(text):
        index.extend([i] * len(per_char(ch)))
    return index if len(index) == len(normalized) else None
