"""BERT tokenization: basic tokenization (clean, CJK split, lower-case, strip accents, punctuation
split) then WordPiece greedy longest-match-first.

The rules are Google BERT's, as Hugging Face `tokenizers` (BertWordPieceTokenizer) and
`transformers` (BertTokenizer) apply them; the tests hold the ids equal to both on real corpora.
This is the reference the C extension of the data path must reproduce id for id.
"""
from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import Iterator, Optional

from uer_ds.tokenizers.base import Span, Tokenizer, char_alignment
from uer_ds.tokenizers.vocab import Vocab

MAX_INPUT_CHARS_PER_WORD = 100  # longer words become [UNK], as in BERT

# CJK Unified Ideographs blocks (BERT's definition; Hangul and kana are not in it).
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
               (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))

# Character classes of the basic tokenizer.
DROP, SPACE, CJK, OTHER = range(4)


def is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def is_punctuation(ch: str) -> bool:
    """ASCII non-alphanumeric printable characters count as punctuation too ($, ^, `, ...)."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def is_control(ch: str) -> bool:
    """Categories C* (Cc, Cf, Cn, Co, Cs) except tab, newline and carriage return."""
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch).startswith("C")


@lru_cache(maxsize=65536)
def char_class(ch: str) -> int:
    """Controls (and NUL, U+FFFD) are dropped first; of what is left, str.isspace() is Unicode's
    White_Space (Zs, Zl, Zp, tab, newline, CR)."""
    cp = ord(ch)
    if cp == 0 or cp == 0xFFFD or is_control(ch):
        return DROP
    if ch.isspace():
        return SPACE
    if is_cjk(cp):
        return CJK
    return OTHER


def strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def split_punctuation(word: str) -> list[str]:
    out: list[str] = []
    start = 0
    for i, ch in enumerate(word):
        if is_punctuation(ch):
            if start < i:
                out.append(word[start:i])
            out.append(ch)
            start = i + 1
    if start < len(word):
        out.append(word[start:])
    return out


def basic_words(text: str) -> Iterator[tuple[str, int, int]]:
    """The basic tokenizer's words before normalisation, as (word, start, end) with [start, end) the
    span of `text` they come from: runs of characters between white space and CJK characters, and
    each CJK character alone.  Dropped characters (controls, soft hyphens, zero-width spaces, NUL,
    U+FFFD) are removed from a word but do not end it, as in BERT: 'infor\u00admation' is one word."""
    current: list[str] = []
    start = end = 0
    for i, ch in enumerate(text):
        cls = char_class(ch)
        if cls == OTHER:
            if not current:
                start = i
            current.append(ch)
            end = i + 1
        elif cls != DROP:  # white space or a CJK character ends the word
            if current:
                yield "".join(current), start, end
                current.clear()
            if cls == CJK:
                yield ch, i, i + 1
    if current:
        yield "".join(current), start, end


def basic_tokenize(text: str, do_lower_case: bool = True) -> list[str]:
    """Words and single punctuation / CJK characters, before WordPiece."""
    return [sub for word, _, _ in basic_words(text) for sub in _normalize_word(word, do_lower_case)]


@lru_cache(maxsize=262144)
def _normalize_word(word: str, do_lower_case: bool) -> tuple[str, ...]:
    if do_lower_case:
        word = word.lower()
        if not word.isascii():
            word = strip_accents(word)
    return tuple(split_punctuation(word))


class WordPiece:
    def __init__(self, vocab: Vocab, unk_token: str = "[UNK]",
                 max_input_chars_per_word: int = MAX_INPUT_CHARS_PER_WORD) -> None:
        self.vocab = vocab.token_to_id
        self.unk = unk_token
        self.max_chars = max_input_chars_per_word
        self.longest = max((len(t) for t in vocab.id_to_token), default=1)
        self.tokenize = lru_cache(maxsize=262144)(self._tokenize)

    def _tokenize(self, word: str) -> tuple[str, ...]:
        n = len(word)
        if n > self.max_chars:
            return (self.unk,)
        pieces: list[str] = []
        start = 0
        while start < n:
            end = min(n, start + self.longest)
            piece = None
            while start < end:
                sub = word[start:end] if start == 0 else "##" + word[start:end]
                if sub in self.vocab:
                    piece = sub
                    break
                end -= 1
            if piece is None:
                return (self.unk,)
            pieces.append(piece)
            start = end
        return tuple(pieces)


class BertTokenizer(Tokenizer):
    kind = "bert"

    def __init__(self, vocab: Vocab, do_lower_case: bool = True,
                 special_tokens: Optional[dict[str, str]] = None) -> None:
        super().__init__(vocab, special_tokens)
        self.do_lower_case = do_lower_case
        self.wordpiece = WordPiece(vocab, unk_token=self.special_tokens["unk"] or "[UNK]")

    def tokenize(self, text: str) -> list[str]:
        out: list[str] = []
        wordpiece = self.wordpiece.tokenize
        for word in basic_tokenize(text, self.do_lower_case):
            out.extend(wordpiece(word))
        return out

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[Span]]:
        """See Tokenizer.encode_with_offsets: each word's pieces by the same rules as `tokenize`, spans
        through a character-by-character alignment of the word with its normalised form."""
        tokens: list[str] = []
        spans: list[Span] = []
        lower, unk = self.do_lower_case, self.wordpiece.unk
        for word, start, end in basic_words(text):
            subwords = _normalize_word(word, lower)
            index = char_alignment(word, "".join(subwords), lambda ch: "".join(_normalize_word(ch, lower)))
            # the text index of each character of the word (dropped characters are not in the word)
            where = [i for i in range(start, end) if char_class(text[i]) != DROP] if index is not None else []
            at = 0
            for sub in subwords:
                for piece in self.wordpiece.tokenize(sub):
                    length = len(sub) if piece == unk else len(piece) - 2 * piece.startswith("##")
                    tokens.append(piece)
                    spans.append((where[index[at]], where[index[at + length - 1]] + 1) if index is not None
                                 else (start, end))
                    at += length
        return self.convert_tokens_to_ids(tokens), spans

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return " ".join(tokens).replace(" ##", "").strip()

    def _identity_extra(self) -> dict:
        return {"do_lower_case": self.do_lower_case}
