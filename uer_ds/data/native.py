"""The C tokenizer (uer_ds.data._native) behind a Tokenizer: `native_encoder(tokenizer)`.

The extension reproduces BertTokenizer, CharTokenizer and SpaceTokenizer id for id (tests compare
it with them on every line of the shipped and the shared corpora).  Words or lines whose
normalisation depends on context go back to the Python tokenizer through a fallback callable.
"""
from __future__ import annotations

from typing import Optional

from uer_ds.tokenizers import Tokenizer
from uer_ds.tokenizers.bert import BertTokenizer, _normalize_word
from uer_ds.tokenizers.simple import CharTokenizer, SpaceTokenizer

try:
    from uer_ds.data import _native
except ImportError as err:  # pragma: no cover - only without a compiler at install time
    _native = None
    IMPORT_ERROR: Optional[ImportError] = err
else:
    IMPORT_ERROR = None

KINDS = {"bert": 0, "char": 1, "space": 2}
MODE_LINES, MODE_BERT, MODE_CLS = 0, 1, 2


def available() -> bool:
    return _native is not None


def supports(tokenizer: Tokenizer) -> bool:
    """Whether the C tokenizer can stand in for this tokenizer (bert, char and space kinds)."""
    return available() and type(tokenizer) in (BertTokenizer, CharTokenizer, SpaceTokenizer)


def _ensure_tables() -> None:
    if not _native.tables_ready():
        from uer_ds.data import unicode_tables

        _native.set_tables(*unicode_tables.build())


def _fallback(tokenizer: Tokenizer):
    """What the C code calls for a bert word, or a char/space line, that it leaves to Python."""
    if isinstance(tokenizer, BertTokenizer):
        wordpiece, lower = tokenizer.wordpiece.tokenize, tokenizer.do_lower_case
        to_ids = tokenizer.convert_tokens_to_ids

        def bert_word(word: str) -> list[int]:
            return to_ids([piece for w in _normalize_word(word, lower) for piece in wordpiece(w)])

        return bert_word
    return tokenizer.encode


def native_encoder(tokenizer: Tokenizer) -> "_native.Encoder":
    """A C Encoder with the tokenizer's vocabulary and rules.

    encoder.encode(text, word_starts=False) -> ids (or (ids, bytes of word-start flags));
    encoder.encode_chunk(buffer, mode, base_offset, new_doc, word_starts) -> dict (see preprocess.py).
    Raises ValueError when the tokenizer has no [UNK] (the C WordPiece needs it).
    """
    if _native is None:
        raise RuntimeError(f"the C extension uer_ds.data._native is not built ({IMPORT_ERROR}); "
                           "reinstall with a C compiler: pip install -e .")
    if not supports(tokenizer):
        raise ValueError(f"the C tokenizer handles bert, char and space, not '{tokenizer.kind}'")
    _ensure_tables()
    unk = tokenizer.require_special("unk")["unk"]
    return _native.Encoder(KINDS[tokenizer.kind], tokenizer.vocab.id_to_token, unk,
                           bool(getattr(tokenizer, "do_lower_case", False)), tokenizer.vocab_size > 65536,
                           _fallback(tokenizer))


CorpusError = _native.CorpusError if _native is not None else ValueError
