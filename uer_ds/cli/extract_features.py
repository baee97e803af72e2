"""`uer-ds extract-features`: one vector per line (or per token) from the last layer, to .npy or .pt."""
from __future__ import annotations

import argparse

from uer_ds.cli.tool_args import add_model_shape_arguments, add_model_tool_arguments, tokenizer_and_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from uer_ds.tools.features import POOLINGS

    add_model_tool_arguments(parser, output_required=True)
    parser.add_argument("--pooling", default="first", choices=POOLINGS,
                        help="first ([CLS]), mean, max, last token, or none (every token; .pt only)")
    add_model_shape_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from uer_ds.tools.common import blank_rows, read_lines
    from uer_ds.tools.features import extract, is_task_tsv, read_task_tsv, save_features

    lines = read_lines(args.test_path)
    tokenizer, model = tokenizer_and_model(args)
    encoded = None
    if is_task_tsv(lines):  # a task's TSV: its text columns, row k = data row k (the header is not text)
        lines, encoded, columns = read_task_tsv(args.test_path, tokenizer, args.seq_length)
        print(f"{args.test_path}: a task TSV: {len(lines)} row(s) of {' + '.join(columns)} (the header and other "
              "columns are not text), encoded as the classifier reads them: [CLS] text_a [SEP]"
              + (" text_b [SEP]" if len(columns) > 1 else ""))
    features = extract(model, tokenizer, lines, args.pooling, args.seq_length, args.batch_size, encoded)
    save_features(features, args.prediction_path)
    shape = tuple(features.shape) if not isinstance(features, list) else f"{len(features)} x (tokens, " \
        f"{features[0].shape[-1]})"
    blank = [str(i + 1) for i in blank_rows(lines)]
    note = ""
    if blank:  # their rows are there, so row k stays line k
        note = (f"; {len(blank)} blank line(s) ({', '.join(blank[:5])}{'...' if len(blank) > 5 else ''}) got "
                + ("NaN rows" if args.pooling != "none" else "(0, H) tensors"))
    print(f"features {shape} ({args.pooling}) -> {args.prediction_path}{note}")
    return 0
