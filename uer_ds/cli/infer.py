"""`uer-ds infer <task> ...`: predictions of a fine-tuned task model (one sub-command per entry of
uer_ds.tasks.TASKS), batched, TSV out.  The flags are here; the recipe is uer_ds.recipes.infer (and
uer_ds.recipes.select_extract for cmrc with --select_model_path)."""
from __future__ import annotations

import argparse

from uer_ds.tasks.base import Task

# the model-config flags `uer-ds infer --help` lists: the config file and the runtime kernel choice
SHOWN_MODEL_FLAGS = ("config_path", "kernels", "help")


def add_infer_arguments(parser: argparse.ArgumentParser, task: Task) -> None:
    """InferOptions' flags, the task's inference flags, the tokenizer's, and the model-shape flags UER-py's
    inference scripts repeat (checked against the saved model)."""
    from uer_ds.cli.common import add_model_arguments, add_tokenizer_arguments
    from uer_ds.compat import add_accepted_flags
    from uer_ds.config.options import add_option_arguments
    from uer_ds.recipes.infer import InferOptions

    add_option_arguments(parser, InferOptions)
    task.add_infer_arguments(parser)
    add_accepted_flags(parser, ("--log_path", "--log_level", "--log_file_level"))
    add_tokenizer_arguments(parser, subwords=True)
    own = tuple(a.dest for a in parser._actions)  # noqa: SLF001 (the task's flags, e.g. --labels_num)
    add_model_arguments(parser, model_flag="--load_model_path", exclude=own)
    # the model's shape comes from its saved config: UER-py's inference scripts repeat it (--encoder bert
    # --layers_num 12 ...), so those flags are accepted and checked, but not listed; --config_path and the
    # runtime --kernels stay in --help
    for action in parser._actions:  # noqa: SLF001
        if action.dest not in own and action.dest not in SHOWN_MODEL_FLAGS and action.option_strings:
            action.help = argparse.SUPPRESS
    group = parser.add_argument_group("model shape (UER-py's inference scripts repeat it)")
    group.description = ("the model-config flags (--encoder, --layers_num, --hidden_size, ...) are accepted, not "
                         "listed: with a task model directory, given values must equal the saved model's (an error "
                         "names both otherwise); with a UER-py .bin they describe the model, with --config_path")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from uer_ds.tasks import TASKS

    sub = parser.add_subparsers(dest="task", metavar="TASK", required=True,
                                help=" | ".join(TASKS) + " (uer-ds infer TASK --help)")
    for name, task in TASKS.items():
        add_infer_arguments(sub.add_parser(name, help=task.help, description=task.help), task)


def run(args: argparse.Namespace) -> int:
    from uer_ds.recipes.infer import infer
    from uer_ds.tasks import TASKS

    if vars(args).get("select_model_path"):  # cmrc: select each question's paragraph first
        from uer_ds.recipes.select_extract import select_then_extract

        return select_then_extract(args)
    if vars(args).get("selection_path"):
        raise ValueError("--selection_path is written by the select-then-extract flow: give --select_model_path too")
    return infer(TASKS[args.task], args)
