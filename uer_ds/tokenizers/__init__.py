"""Tokenizers: one interface (tokenize, ids <-> tokens, decode, special tokens) and one registry."""
from __future__ import annotations

import os
import warnings
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


class CaseMismatchWarning(UserWarning):
    """do_lower_case was set against what the vocabulary's entries say."""


def build_tokenizer(kind: str, vocab_path: Optional[PathLike] = None, spm_model_path: Optional[PathLike] = None,
                    do_lower_case: Optional[bool] = None,
                    special_tokens: Optional[dict[str, str]] = None) -> Tokenizer:
    """A tokenizer of `kind` over a vocabulary file or a SentencePiece model.

    As in UER-py, giving `spm_model_path` makes SentencePiece do the tokenization whatever the kind.
    do_lower_case None follows the vocabulary (lower_case_for); set against it, a CaseMismatchWarning
    names both.
    """
    if kind not in TOKENIZERS:
        raise ValueError(f"tokenizer has value '{kind}': must be one of {', '.join(TOKENIZERS)}")
    if spm_model_path is not None or kind == "spm":
        if spm_model_path is None:
            raise ValueError("tokenizer 'spm' needs spm_model_path")
        tokenizer = SentencePieceTokenizer(spm_model_path, do_lower_case=False, special_tokens=special_tokens)
        tokenizer.do_lower_case = lower_case_for(tokenizer, do_lower_case)
        return tokenizer
    if vocab_path is None:
        raise ValueError(f"tokenizer '{kind}' needs vocab_path (or spm_model_path)")
    vocab = Vocab.load(vocab_path)
    lower = lower_case_for(TOKENIZERS[kind], do_lower_case, vocab)
    return TOKENIZERS[kind](vocab, do_lower_case=lower, special_tokens=special_tokens)


def lower_case_for(tokenizer: Union[Tokenizer, type], do_lower_case: Optional[bool],
                   vocab: Optional[Vocab] = None) -> bool:
    """do_lower_case for a tokenizer (class or instance) over `vocab` (default: the tokenizer's).

    None follows the vocabulary, as Google's BERT checks the checkpoint against the flag: a cased
    vocabulary (capitals in more than 1 % of its entries with letters) means False, an uncased one
    True; a vocabulary without cased letters keeps the kind's default (True for bert, as BERT and
    UER-py; False for the others, as UER-py).  A value set against the vocabulary is kept, with a
    CaseMismatchWarning naming both.
    """
    vocab = vocab if vocab is not None else tokenizer.vocab
    casing = vocab.casing()
    if do_lower_case is None:
        is_bert = (tokenizer if isinstance(tokenizer, type) else type(tokenizer)) is BertTokenizer
        return casing.kind == "uncased" or (casing.kind is None and is_bert)
    if casing.kind == ("cased" if do_lower_case else "uncased"):
        effect = ("its capitalised entries will never match lower-cased text" if do_lower_case else
                  "capital letters will not match its entries (unknown tokens or other pieces)")
        warnings.warn(f"do_lower_case is {str(do_lower_case).lower()}, but the vocabulary {vocab.source} is "
                      f"{casing.describe()}: {effect}", CaseMismatchWarning, stacklevel=3)
    return do_lower_case


__all__ = ["SPECIAL_TOKENS", "TOKENIZERS", "CaseMismatchWarning", "Tokenizer", "Vocab", "build_tokenizer",
           "lower_case_for"]
