"""`uer-ds infer <task> ...`: predictions of a fine-tuned task model (one sub-command per entry of
uer_ds.tasks.TASKS), batched, TSV out."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from uer_ds.tasks import TASKS
    from uer_ds.tasks.runner import add_infer_arguments

    sub = parser.add_subparsers(dest="task", metavar="TASK", required=True,
                                help=" | ".join(TASKS) + " (uer-ds infer TASK --help)")
    for name, task in TASKS.items():
        add_infer_arguments(sub.add_parser(name, help=task.help, description=task.help), task)


def run(args: argparse.Namespace) -> int:
    from uer_ds.tasks import TASKS
    from uer_ds.tasks.runner import infer

    if getattr(args, "select_model_path", None):  # cmrc: select each question's paragraph first
        from uer_ds.tasks.adl import select_then_extract

        return select_then_extract(args)
    if getattr(args, "selection_path", None):
        raise ValueError("--selection_path is written by the select-then-extract flow: give --select_model_path too")
    return infer(TASKS[args.task], args)
