"""`uer-ds convert --from hf|uer|tencentpretrain|uer_ds --to hf|uer|uer_ds --model FAMILY --input X --output Y`."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from uer_ds.convert import CONVERSIONS, MODEL_FAMILIES

    sources = sorted({src for src, _ in CONVERSIONS})
    targets = sorted({dst for _, dst in CONVERSIONS})
    parser.add_argument("--from", dest="source", required=True, choices=sources,
                        help="input format: hf (model directory), uer / tencentpretrain (state dict .bin), "
                             "uer_ds (model directory)")
    parser.add_argument("--to", dest="dest", required=True, choices=targets,
                        help="output format: hf (directory), uer (.bin + <name>_config.json), uer_ds (directory)")
    parser.add_argument("--model", required=True, choices=MODEL_FAMILIES, help="model family")
    parser.add_argument("--input", required=True, help="input model directory or .bin file")
    parser.add_argument("--output", required=True, help="output path (must not exist yet; written whole or not at all)")
    parser.add_argument("--config_path", default=None,
                        help="UER JSON model config of a --from uer/tencentpretrain checkpoint (a file, or a "
                             "shipped name such as bert/base); their .bin files hold none")


def run(args: argparse.Namespace) -> int:
    from uer_ds.convert import CONVERSIONS

    pair = (args.source, args.dest)
    if pair not in CONVERSIONS:
        raise ValueError(f"--from {args.source} --to {args.dest}: no such conversion "
                         f"(available: {', '.join(f'{a}->{b}' for a, b in CONVERSIONS)})")
    report = CONVERSIONS[pair](args.input, args.output, args.model, args.config_path)
    for line in report.lines():
        print(line)
    print(f"wrote {args.output}")
    return 0
