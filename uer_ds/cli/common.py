"""Arguments several commands share."""
from __future__ import annotations

import argparse
from typing import Optional

from uer_ds.config import ModelConfig, add_model_config_arguments, model_config_from_args
from uer_ds.tokenizers import TOKENIZERS, Tokenizer, build_tokenizer


def add_tokenizer_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    group = parser.add_argument_group("tokenizer")
    group.add_argument("--vocab_path", help="vocabulary file, one token per line")
    group.add_argument("--spm_model_path", help="SentencePiece model (replaces the vocabulary, as in UER-py)")
    group.add_argument("--tokenizer", default="bert", choices=tuple(TOKENIZERS), help="tokenizer kind (default bert)")
    group.add_argument("--do_lower_case", default=None, choices=("true", "false"),
                       help="lower-case before tokenizing (default: follows the vocabulary: false when it is cased, "
                            "true when uncased; without cased letters true for bert, false otherwise); set against "
                            "the vocabulary, a warning names both")


def tokenizer_from_args(args: argparse.Namespace) -> Optional[Tokenizer]:
    if args.vocab_path is None and args.spm_model_path is None:
        return None
    lower = None if args.do_lower_case is None else args.do_lower_case == "true"
    return build_tokenizer(args.tokenizer, args.vocab_path, args.spm_model_path, do_lower_case=lower)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_config_arguments(parser)


def model_config_with_vocab(args: argparse.Namespace, tokenizer: Optional[Tokenizer]) -> ModelConfig:
    """The merged model config; vocab_size comes from the tokenizer when one is given."""
    cfg = model_config_from_args(args)
    if tokenizer is not None:
        if cfg.vocab_size not in (0, tokenizer.vocab_size):
            raise ValueError(f"vocab_size {cfg.vocab_size} in the model config disagrees with the vocabulary "
                             f"({tokenizer.vocab_size} entries in {tokenizer.vocab.source})")
        cfg = cfg.replace(vocab_size=tokenizer.vocab_size)
    return cfg
