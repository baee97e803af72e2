"""`uer-ds check-model`: a checkpoint's tensors (names, shapes, dtypes) and which model config they fit."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--load_model_path", "--input_model_path", required=True,
                        help="a model directory, a uer_ds checkpoint (or its global_step<N> tag), a Hugging Face "
                             "directory, or a .safetensors/.bin file (uer_ds or UER-py key names)")
    parser.add_argument("--config_path", default=None,
                        help="check against this UER JSON config or shipped name (default: the checkpoint's own "
                             "config, else every shipped config)")
    parser.add_argument("--vocab_path", default=None,
                        help="accepted for UER-py compatibility (vocab_size is read from the word embedding)")
    parser.add_argument("--all", action="store_true", help="list every tensor (default: the first 40)")


def run(args: argparse.Namespace) -> int:
    from uer_ds.tools.check_model import check_model, format_report

    contents, fits = check_model(args.load_model_path, args.config_path)
    print(format_report(args.load_model_path, contents, fits, limit=0 if args.all else 40))
    return 0 if any(f.ok for f in fits) else 1
