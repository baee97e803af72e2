"""Arguments several commands share."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from uer_ds.config import ModelConfig, add_model_config_arguments, model_config_from_args
from uer_ds.tokenizers import TOKENIZERS, Tokenizer, build_tokenizer


def add_tokenizer_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    group = parser.add_argument_group("tokenizer")
    group.add_argument("--vocab_path", help="vocabulary file, one token per line")
    group.add_argument("--spm_model_path", help="SentencePiece model (replaces the vocabulary, as in UER-py)")
    group.add_argument("--tokenizer", default="bert", choices=tuple(TOKENIZERS), help="tokenizer kind (default bert)")
    group.add_argument("--do_lower_case", default=None, choices=("true", "false"),
                       help="lower-case before tokenizing (default: true for bert, false otherwise)")


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


# ---- UER-py's engine flags -----------------------------------------------------------------------
FP16_OPT_LEVELS = ("O0", "O1", "O2", "O3")  # apex's levels, which UER-py passes through


def add_uer_engine_arguments(group: argparse._ArgumentGroup) -> None:
    """UER-py's `--fp16 [--fp16_opt_level O1]` beside --deepspeed_config (resolved by
    `deepspeed_config_name`)."""
    group.add_argument("--fp16", action="store_true",
                       help="UER-py's mixed precision: take the fp16 variant of a shipped --deepspeed_config "
                            "(zero2 -> zero2_fp16; DeepSpeed's loss scaling and fp32 master weights)")
    group.add_argument("--fp16_opt_level", choices=FP16_OPT_LEVELS, default=None,
                       help="accepted with --fp16 (apex's level in UER-py); DeepSpeed's fp16 is one mode, close to O2")


def deepspeed_config_name(args: argparse.Namespace) -> tuple[str, list[str]]:
    """--deepspeed_config after UER-py's --fp16, and note lines for the user.

    --fp16 turns a shipped name into its fp16 variant; a ds_config file must enable fp16 itself.
    """
    from uer_ds.engine.ds_config import SHIPPED_DS_CONFIG_DIR

    name = str(args.deepspeed_config)
    notes = []
    if getattr(args, "fp16_opt_level", None) and not getattr(args, "fp16", False):
        raise ValueError(f"--fp16_opt_level {args.fp16_opt_level} needs --fp16")
    if not getattr(args, "fp16", False):
        return name, notes
    base = name.removesuffix(".json")
    if (SHIPPED_DS_CONFIG_DIR / f"{base}.json").is_file() and not Path(name).is_file():
        if base.endswith("_bf16"):
            raise ValueError(f"--fp16 with --deepspeed_config {name}: that config trains in bf16; choose one precision")
        if not base.endswith("_fp16"):
            name = f"{base}_fp16"
        if args.fp16_opt_level:
            notes.append(f"note: --fp16_opt_level {args.fp16_opt_level} is apex's; DeepSpeed's fp16 ({name}) keeps "
                         "fp32 master weights with dynamic loss scaling")
        return name, notes
    from uer_ds.engine.ds_config import load_ds_config

    values, source = load_ds_config(name)
    if not (values.get("fp16") or {}).get("enabled", False):
        raise ValueError(f"--fp16 with --deepspeed_config {source}: that file does not enable fp16; add "
                         "\"fp16\": {\"enabled\": true} to it, or give a shipped name (zero0..zero3, *_offload)")
    return name, notes
