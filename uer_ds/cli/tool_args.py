"""Arguments the model tools share, with UER-py's flag names (--load_model_path, --test_path, ...)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from uer_ds.cli.common import add_tokenizer_arguments, tokenizer_from_args


def add_model_tool_arguments(parser: argparse.ArgumentParser, output_required: bool = False) -> None:
    parser.add_argument("--load_model_path", required=True,
                        help="uer_ds model directory, Hugging Face directory, or UER-py/TencentPretrain .bin")
    parser.add_argument("--config_path", default=None, help="UER JSON model config (needed for a .bin model)")
    parser.add_argument("--test_path", required=True, help="input text, one item per line (UTF-8)")
    parser.add_argument("--prediction_path", required=output_required, default=None,
                        help="output file" + ("" if output_required else " (default: standard output)"))
    parser.add_argument("--seq_length", type=int, default=128, help="tokens per line at most (default 128)")
    parser.add_argument("--batch_size", type=int, default=32, help="lines per forward pass (default 32)")
    add_tokenizer_arguments(parser)


def tokenizer_and_model(args: argparse.Namespace, need_target: Optional[str] = None):
    from uer_ds.tools.common import load_model_for

    tokenizer = tokenizer_from_args(args)
    if tokenizer is None:
        raise ValueError("give the model's vocabulary: --vocab_path or --spm_model_path")
    if args.seq_length <= 0:
        raise ValueError(f"seq_length has value {args.seq_length}: must be positive")
    return tokenizer, load_model_for(args.load_model_path, tokenizer, args.config_path, need_target)


def write_text(text: str, path: Optional[str]) -> None:
    """To `path` (written whole: a temporary name, then renamed), or to standard output."""
    if path is None:
        sys.stdout.write(text)
        return
    from uer_ds.convert.rules import new_file

    with new_file(Path(path), overwrite=True) as tmp:
        tmp.write_text(text, encoding="utf-8")
