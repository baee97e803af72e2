"""`uer-ds model summary`: parameter counts by component for a model config."""
from __future__ import annotations

import argparse

from uer_ds.cli.common import add_model_arguments, add_tokenizer_arguments, model_config_with_vocab, tokenizer_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="summary")
    summary = sub.add_parser("summary", help="parameter counts by component")
    add_model_arguments(summary)
    add_tokenizer_arguments(summary, subwords=True)


def run(args: argparse.Namespace) -> int:
    from uer_ds.models import build_model
    from uer_ds.models.summary import parameter_table

    cfg = model_config_with_vocab(args, tokenizer_from_args(args))
    model = build_model(cfg, device="meta")  # no memory, instant even for the largest configs
    rows = parameter_table(model)
    width = max(len(name) for name, _ in rows)
    print(f"model: {args.config_path}  (encoder {cfg.encoder}, targets {', '.join(cfg.target) or 'none'}, "
          f"vocab {cfg.vocab_size})")
    print(f"{'component':<{width}}  {'parameters':>13}")
    for name, count in rows:
        print(f"{name:<{width}}  {count:>13,}")
    if cfg.tie_weights:
        print("(the output matrix is tied to embedding.word and counted there)")
    return 0
