"""The `word` tokenizer: Chinese word segmentation with jieba, other text by white space.

The text is split at white space; a field that holds a CJK character is segmented by jieba (which
also separates punctuation and Latin or digit runs inside it), any other field is one token.  Tokens
outside the vocabulary become [UNK], unless subword features are on (`use_subwords`, see
uer_ds/tokenizers/subword.py), where the model also encodes each word from its characters.
"""
from __future__ import annotations

from typing import Iterable, Optional

from uer_ds.tokenizers.base import Tokenizer
from uer_ds.tokenizers.bert import is_cjk
from uer_ds.tokenizers.segment import JiebaSegmenter, Word
from uer_ds.tokenizers.vocab import Vocab

_SEGMENTER: Optional[JiebaSegmenter] = None


def default_segmenter() -> JiebaSegmenter:
    """One jieba segmenter per process (its dictionary takes about a second to load)."""
    global _SEGMENTER
    if _SEGMENTER is None:
        _SEGMENTER = JiebaSegmenter()
    return _SEGMENTER


def segment_words(text: str, segmenter: JiebaSegmenter) -> list[Word]:
    """(word, start, end) of every token of `text`: white-space fields, jieba's words inside those
    that hold a CJK character.  No token is white space; text[start:end] == word."""
    out: list[Word] = []
    start = None
    for i, ch in enumerate(text + " "):
        if not ch.isspace():
            start = i if start is None else start
            continue
        if start is None:
            continue
        field = text[start:i]
        if any(is_cjk(ord(c)) for c in field):
            out.extend((w, start + a, start + b) for w, a, b in segmenter.words(field) if not w.isspace())
        else:
            out.append((field, start, i))
        start = None
    return out


class WordTokenizer(Tokenizer):
    kind = "word"

    def __init__(self, vocab: Vocab, do_lower_case: bool = False,
                 special_tokens: Optional[dict[str, str]] = None,
                 segmenter: Optional[JiebaSegmenter] = None) -> None:
        super().__init__(vocab, special_tokens)
        self.do_lower_case = do_lower_case
        self.segmenter = segmenter or default_segmenter()
        self.subwords = None

    def use_subwords(self, table) -> None:
        """Attach a SubwordTable: words outside the vocabulary then get extended ids (>= vocab_size) that
        the table turns into characters and [UNK] when batches are collated (tokenizers/subword.py)."""
        if table.vocab is not self.vocab and table.vocab.id_to_token != self.vocab.id_to_token:
            raise ValueError(f"the subword table was built for another vocabulary than {self.vocab.source}")
        self.subwords = table

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        if self.subwords is None:
            return super().convert_tokens_to_ids(tokens)
        return [self.subwords.word_id(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        if self.subwords is None:
            return super().convert_ids_to_tokens(ids)
        return [self.subwords.word_of(i) for i in ids]

    def words(self, text: str) -> list[Word]:
        """(token, start, end) per token, lower-cased when asked (the span is the original's)."""
        words = segment_words(text, self.segmenter)
        return [(w.lower(), a, b) for w, a, b in words] if self.do_lower_case else words

    def tokenize(self, text: str) -> list[str]:
        return [w for w, _, _ in self.words(text)]

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """(ids, spans): ids == encode(text); each token's span [start, end) of characters of `text`
        (Python string indices), from jieba's own offsets; a lower-cased token keeps its original span."""
        words = self.words(text)
        return self.convert_tokens_to_ids([w for w, _, _ in words]), [(a, b) for _, a, b in words]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """CJK words join directly; other neighbours are separated by a space."""
        out = ""
        for token in tokens:
            glue = not out or is_cjk(ord(out[-1])) or is_cjk(ord(token[0]))
            out += token if glue else " " + token
        return out

    def _identity_extra(self) -> dict:
        extra = {"do_lower_case": self.do_lower_case, **self.segmenter.identity()}
        return extra if self.subwords is None else {**extra, **self.subwords.identity()}
