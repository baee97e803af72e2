"""`uer-ds convert --from hf --to uer_ds --model bert|gpt2 --input DIR --output DIR`."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from uer_ds.convert import CONVERSIONS, MODEL_FAMILIES

    sources = sorted({src for src, _ in CONVERSIONS})
    targets = sorted({dst for _, dst in CONVERSIONS})
    parser.add_argument("--from", dest="source", required=True, choices=sources, help="input format")
    parser.add_argument("--to", dest="dest", required=True, choices=targets, help="output format")
    parser.add_argument("--model", required=True, choices=MODEL_FAMILIES, help="model family")
    parser.add_argument("--input", required=True, help="input model directory")
    parser.add_argument("--output", required=True, help="output model directory")


def run(args: argparse.Namespace) -> int:
    from uer_ds.convert import CONVERSIONS

    pair = (args.source, args.dest)
    if pair not in CONVERSIONS:
        raise ValueError(f"--from {args.source} --to {args.dest}: no such conversion "
                         f"(available: {', '.join(f'{a}->{b}' for a, b in CONVERSIONS)})")
    report = CONVERSIONS[pair](args.input, args.output, args.model)
    for line in report.lines():
        print(line)
    print(f"wrote {args.output}")
    return 0
