"""`uer-ds bench finetune`: the flags (fine-tuning's, for the classifier, and the benchmark's); the run is
uer_ds.recipes.bench_finetune."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from uer_ds.tasks import TASKS
    from uer_ds.cli.finetune import add_finetune_arguments

    add_finetune_arguments(parser, TASKS["classifier"])
    for action in parser._actions:  # noqa: SLF001 (--synthetic_lengths stands in for the files)
        if action.dest in ("train_path", "dev_path"):
            action.required = False
    group = parser.add_argument_group("benchmark")
    group.add_argument("--steps", type=int, default=30, help="timed steps (default 30)")
    group.add_argument("--warmup_steps", type=int, default=5,
                       help="untimed steps first (default 5; the first Triton calls compile)")
    group.add_argument("--synthetic_lengths", choices=("book_review", "cmrc2018", "uniform", "full"),
                       help="instead of --train_path: examples of random vocabulary words whose token counts follow "
                            "this distribution at --seq_length (uer_ds.kernels.lengths; for machines without the "
                            "data: speed does not depend on which tokens they are)")
    group.add_argument("--synthetic_examples", type=int, default=2000, help="examples to make (default 2000)")
    group.add_argument("--json_path", help="write the result as JSON")


def run(args: argparse.Namespace) -> int:
    from uer_ds.recipes.bench_finetune import run as bench

    return bench(args)
