"""Tokenizers: one interface (tokenize, ids <-> tokens, decode, special tokens) and one registry."""
from __future__ import annotations

import os
from typing import Optional, Union

from uer_ds.tokenizers.base import SPECIAL_TOKENS, Tokenizer
from uer_ds.tokenizers.bert import BertTokenizer
from uer_ds.tokenizers.simple import CharTokenizer, SpaceTokenizer
from uer_ds.tokenizers.spm import SentencePieceTokenizer
from uer_ds.tokenizers.vocab import Vocab
from uer_ds.tokenizers.word import WordTokenizer

TOKENIZERS = {
    "bert": BertTokenizer,
    "char": CharTokenizer,
    "space": SpaceTokenizer,
    "word": WordTokenizer,
    "spm": SentencePieceTokenizer,
}

PathLike = Union[str, os.PathLike]


def build_tokenizer(kind: str, vocab_path: Optional[PathLike] = None, spm_model_path: Optional[PathLike] = None,
                    do_lower_case: Optional[bool] = None,
                    special_tokens: Optional[dict[str, str]] = None) -> Tokenizer:
    """A tokenizer of `kind` over a vocabulary file or a SentencePiece model.

    As in UER-py, giving `spm_model_path` makes SentencePiece do the tokenization whatever the kind.
    do_lower_case defaults to True for bert and False otherwise.
    """
    if kind not in TOKENIZERS:
        raise ValueError(f"tokenizer has value '{kind}': must be one of {', '.join(TOKENIZERS)}")
    lower = (kind == "bert") if do_lower_case is None else do_lower_case
    if spm_model_path is not None or kind == "spm":
        if spm_model_path is None:
            raise ValueError("tokenizer 'spm' needs spm_model_path")
        return SentencePieceTokenizer(spm_model_path, do_lower_case=lower, special_tokens=special_tokens)
    if vocab_path is None:
        raise ValueError(f"tokenizer '{kind}' needs vocab_path (or spm_model_path)")
    return TOKENIZERS[kind](Vocab.load(vocab_path), do_lower_case=lower, special_tokens=special_tokens)


__all__ = ["SPECIAL_TOKENS", "TOKENIZERS", "Tokenizer", "Vocab", "build_tokenizer"]
