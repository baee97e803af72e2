"""Flags several commands share.  What the flags are read into (the tokenizer, the model config, the
job's fingerprint) is uer_ds.recipes.inputs', below the commands, so that recipes, tasks and deploy/
never import the CLI; its names are re-exported here for the commands."""
from __future__ import annotations

import argparse
from typing import Optional

from uer_ds.config import UER_DEFAULT_CONFIG, EngineConfig, add_model_config_arguments
from uer_ds.config.options import add_option_arguments
from uer_ds.recipes.inputs import (PER_HOST_ARGUMENTS, RUNTIME_KEYS, SHAPE_KEYS, add_tokenizer_arguments,
                                   attach_subwords, check_model_flags, file_identity, flags_given, job_fingerprint,
                                   model_config_with_vocab, resolve_config_default, tokenizer_from_args,
                                   with_sub_vocab)


def add_model_arguments(parser: argparse.ArgumentParser, model_flag: Optional[str] = None,
                        exclude: tuple[str, ...] = ()) -> None:
    """The model-config flags; with `model_flag` (the flag naming a model, --pretrained_model_path say)
    --config_path defaults to that model's own config (see resolve_config_default)."""
    add_model_config_arguments(parser, exclude=exclude, config_default=None if model_flag else UER_DEFAULT_CONFIG)
    # a command's own flag named like a config key (a tool's --pooling) is not a model-config flag
    parser.set_defaults(not_model_flags=tuple(exclude))
    if model_flag:
        action = next(a for a in parser._actions if a.dest == "config_path")  # noqa: SLF001
        action.help = (f"UER JSON model config, or a shipped name such as bert/tiny (default: the config.json of "
                       f"{model_flag} -- its directory's, or <name>_config.json / config.json beside a .bin -- "
                       f"else {UER_DEFAULT_CONFIG}, UER-py's default)")


def add_engine_arguments(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = (),
                         helps: Optional[dict[str, str]] = None) -> None:
    """The "DeepSpeed engine" group: one flag per uer_ds.config.EngineConfig field (`exclude`: fields the
    command has no use for, fine-tuning's pipeline_stages; `helps`: the command's own help texts)."""
    add_option_arguments(parser.add_argument_group("DeepSpeed engine"), EngineConfig, exclude=exclude, helps=helps)


def deepspeed_config_name(args: argparse.Namespace) -> tuple[str, list[str]]:
    """--deepspeed_config after UER-py's --fp16 (uer_ds.engine.ds_config.fp16_variant), and note lines."""
    from uer_ds.engine.ds_config import fp16_variant

    return fp16_variant(args.deepspeed_config, args.fp16, args.fp16_opt_level)


__all__ = ["PER_HOST_ARGUMENTS", "RUNTIME_KEYS", "SHAPE_KEYS", "add_engine_arguments", "add_model_arguments",
           "add_tokenizer_arguments", "attach_subwords", "check_model_flags", "deepspeed_config_name",
           "file_identity", "flags_given", "job_fingerprint", "model_config_with_vocab", "resolve_config_default",
           "tokenizer_from_args", "with_sub_vocab"]
