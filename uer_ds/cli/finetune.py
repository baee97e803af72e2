"""`uer-ds finetune <task> ...` (also under `deepspeed --module uer_ds finetune <task> ...`): one
sub-command per entry of uer_ds.tasks.TASKS, its flags here; the recipe is uer_ds.recipes.finetune
(plan -> build -> run -> export), the same for every task."""
from __future__ import annotations

import argparse

from uer_ds.tasks.base import Task


def add_finetune_arguments(parser: argparse.ArgumentParser, task: Task) -> None:
    """The task's flags, then fine-tuning's (FinetuneOptions, OutputConfig), the engine's, the model
    config's, the tokenizer's and TrainConfig's with fine-tuning's defaults."""
    from uer_ds.cli.common import add_engine_arguments, add_model_arguments, add_tokenizer_arguments
    from uer_ds.compat import add_accepted_flags
    from uer_ds.config import OutputConfig, add_train_config_arguments
    from uer_ds.config.engine import FINETUNE_ENGINE_HELP
    from uer_ds.config.options import add_option_arguments
    from uer_ds.recipes.finetune import FINETUNE_OUTPUT_HELP, FinetuneOptions

    task.add_arguments(parser)
    group = parser.add_argument_group("fine-tuning")
    add_option_arguments(group, FinetuneOptions, exclude=("save_checkpoint_steps",),
                         defaults={"metric": task.metrics[0]}, choices={"metric": (*task.metrics, "loss")},
                         helps={"metric": "dev metric that picks the best model and drives early stopping "
                                          f"(default {task.metrics[0]}; loss: the dev loss, lower is better)"})
    output_help = ("directory for the best model (config.json, task.json, model.safetensors) and report.json "
                   f"(default {task.uer_output_model_path}, UER-py's path; here a directory, which `uer-ds infer "
                   "--load_model_path` takes)")
    add_option_arguments(group, OutputConfig, defaults={"output_model_path": task.uer_output_model_path},
                         helps=dict(FINETUNE_OUTPUT_HELP, output_model_path=output_help))
    add_option_arguments(group, FinetuneOptions, exclude=tuple(
        f for f in FinetuneOptions.__dataclass_fields__ if f != "save_checkpoint_steps"))
    add_engine_arguments(parser, exclude=("pipeline_stages",), helps=FINETUNE_ENGINE_HELP)
    add_model_arguments(parser, model_flag="--pretrained_model_path")
    add_tokenizer_arguments(parser, subwords=True)
    add_train_config_arguments(parser, exclude=("total_steps", "save_checkpoint_steps"), learning_rate=2e-5,
                               batch_size=32, report_steps=100)
    add_accepted_flags(parser, ("--log_path", "--log_level", "--log_file_level", "--optimizer"))
    parser.set_defaults(command_argv=None)  # the command line, set by uer_ds.cli.main


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from uer_ds.tasks import TASKS

    sub = parser.add_subparsers(dest="task", metavar="TASK", required=True,
                                help=" | ".join(TASKS) + " (uer-ds finetune TASK --help)")
    for name, task in TASKS.items():
        add_finetune_arguments(sub.add_parser(name, help=task.help, description=task.help), task)


def run(args: argparse.Namespace) -> int:
    from uer_ds.recipes.finetune import main
    from uer_ds.tasks import TASKS

    return main(TASKS[args.task], args)
