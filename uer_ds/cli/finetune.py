"""`uer-ds finetune <task> ...` (also under `deepspeed --module uer_ds finetune <task> ...`): one
sub-command per entry of uer_ds.tasks.TASKS, all driven by uer_ds.tasks.runner.finetune."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from uer_ds.tasks import TASKS
    from uer_ds.tasks.runner import add_finetune_arguments

    sub = parser.add_subparsers(dest="task", metavar="TASK", required=True,
                                help=" | ".join(TASKS) + " (uer-ds finetune TASK --help)")
    for name, task in TASKS.items():
        add_finetune_arguments(sub.add_parser(name, help=task.help, description=task.help), task)


def run(args: argparse.Namespace) -> int:
    from uer_ds.tasks import TASKS
    from uer_ds.tasks.runner import finetune

    return finetune(TASKS[args.task], args)
