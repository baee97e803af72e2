"""`uer-ds cloze`: mask a position of each line (or use its [MASK]s) and list the MLM's top-n tokens."""
from __future__ import annotations

import argparse

from uer_ds.cli.tool_args import (add_model_shape_arguments, add_model_tool_arguments, tokenizer_and_model,
                                  write_text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_tool_arguments(parser)
    parser.add_argument("--topn", type=int, default=10, help="predictions per mask (default 10)")
    parser.add_argument("--seed", type=int, default=7, help="picks the masked position of plain lines (default 7)")
    add_model_shape_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from uer_ds.tools.cloze import cloze, format_items
    from uer_ds.tools.common import read_lines

    lines = read_lines(args.test_path)
    tokenizer, model = tokenizer_and_model(args, need_target="mlm")
    items = cloze(model, tokenizer, lines, args.topn, args.seq_length, args.batch_size, args.seed)
    write_text(format_items(tokenizer, items), args.prediction_path)
    return 0
