"""`uer-ds pretrain` (also `deepspeed [--hostfile H] --module uer_ds pretrain ...`): the flags; the recipe is
uer_ds.recipes.pretrain (plan -> launch -> build -> run -> export)."""
from __future__ import annotations

import argparse

from uer_ds.cli.common import add_engine_arguments, add_model_arguments, add_tokenizer_arguments
from uer_ds.compat import add_accepted_flags
from uer_ds.config import OutputConfig, add_train_config_arguments
from uer_ds.config.options import add_option_arguments
from uer_ds.recipes.pretrain import LaunchOptions, MaskingOptions, PretrainOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_option_arguments(parser, PretrainOptions)
    add_option_arguments(parser.add_argument_group("output and logging"), OutputConfig)
    add_engine_arguments(parser)
    add_option_arguments(parser.add_argument_group(
        "UER-py's launch flags (start this machine's processes; the deepspeed launcher is the alternative)"),
        LaunchOptions)
    add_model_arguments(parser, model_flag="--pretrained_model_path")
    add_tokenizer_arguments(parser, subwords=True)
    add_train_config_arguments(parser)
    add_option_arguments(parser.add_argument_group(
        "masking (UER-py's pretrain.py flags; uer_ds sets them at preprocessing)"), MaskingOptions)
    add_accepted_flags(parser, ("--instances_buffer_size", "--log_path", "--log_level", "--log_file_level",
                                "--optimizer"))
    parser.set_defaults(command_argv=None)  # the command line, set by uer_ds.cli.main (a launcher re-runs it)


def run(args: argparse.Namespace) -> int:
    from uer_ds.recipes.pretrain import main

    return main(args)
