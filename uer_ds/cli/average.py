"""`uer-ds average`: the parameter-wise mean of several checkpoints of one model."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model_list_path", nargs="+", required=True,
                        help="uer_ds model directories, or weight files (.safetensors / .bin state dicts)")
    parser.add_argument("--output_model_path", required=True,
                        help="output: a model directory for directories; for files, .bin (torch.save, what UER-py "
                             "loads) or .safetensors")


def run(args: argparse.Namespace) -> int:
    from uer_ds.tools.average import average

    count = average(args.model_list_path, args.output_model_path)
    print(f"averaged {len(args.model_list_path)} checkpoints, {count} tensors -> {args.output_model_path}")
    return 0
