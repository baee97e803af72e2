"""Arguments several commands share."""
from __future__ import annotations

import argparse
from typing import Optional

from uer_ds.config import ModelConfig, add_model_config_arguments, model_config_from_args
from uer_ds.tokenizers import TOKENIZERS, Tokenizer, build_tokenizer


def add_tokenizer_arguments(parser: argparse.ArgumentParser, required: bool = False, subwords: bool = False) -> None:
    """--vocab_path --spm_model_path --tokenizer --do_lower_case (and --sub_vocab_path where the command
    serves models with subword features)."""
    group = parser.add_argument_group("tokenizer")
    group.add_argument("--vocab_path", help="vocabulary file, one token per line")
    group.add_argument("--spm_model_path", help="SentencePiece model (replaces the vocabulary, as in UER-py)")
    group.add_argument("--tokenizer", default="bert", choices=tuple(TOKENIZERS), help="tokenizer kind (default bert)")
    group.add_argument("--do_lower_case", default=None, choices=("true", "false"),
                       help="lower-case before tokenizing (default: true for bert, false otherwise)")
    if subwords:
        group.add_argument("--sub_vocab_path",
                           help="character vocabulary of the subword features (with --subword_type char and "
                                "--tokenizer word; build it with `uer-ds build-vocab --kind char`)")


def tokenizer_from_args(args: argparse.Namespace) -> Optional[Tokenizer]:
    sub_vocab_path = getattr(args, "sub_vocab_path", None)
    if args.vocab_path is None and args.spm_model_path is None:
        if sub_vocab_path is not None:
            raise ValueError("--sub_vocab_path needs the word vocabulary too: give --vocab_path")
        return None
    lower = None if args.do_lower_case is None else args.do_lower_case == "true"
    tokenizer = build_tokenizer(args.tokenizer, args.vocab_path, args.spm_model_path, do_lower_case=lower)
    if sub_vocab_path is not None:
        attach_subwords(tokenizer, sub_vocab_path)
    return tokenizer


def attach_subwords(tokenizer: Tokenizer, sub_vocab_path: str) -> None:
    """Give a word tokenizer the SubwordTable of its vocabulary and the character vocabulary."""
    from uer_ds.tokenizers import Vocab
    from uer_ds.tokenizers.subword import SubwordTable, check_subword_tokenizer

    check_subword_tokenizer(tokenizer.kind)
    pad = tokenizer.special_tokens.get("pad")
    tokenizer.use_subwords(SubwordTable(tokenizer.vocab, Vocab.load(sub_vocab_path), pad_token=pad,
                                        unk_token=tokenizer.special_tokens.get("unk") or "[UNK]"))


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
    return with_sub_vocab(cfg, getattr(tokenizer, "subwords", None))


def with_sub_vocab(cfg: ModelConfig, table) -> ModelConfig:
    """sub_vocab_size from the SubwordTable (or None); subword_type and --sub_vocab_path must agree."""
    if table is None:
        return cfg
    if cfg.subword_type == "none":
        raise ValueError("--sub_vocab_path is given but the model config has subword_type 'none': add "
                         "--subword_type char (or leave out --sub_vocab_path)")
    if cfg.sub_vocab_size not in (0, table.sub_vocab_size):
        raise ValueError(f"sub_vocab_size {cfg.sub_vocab_size} in the model config disagrees with the "
                         f"sub-vocabulary ({table.sub_vocab_size} entries in {table.sub_vocab.source})")
    return cfg.replace(sub_vocab_size=table.sub_vocab_size)
