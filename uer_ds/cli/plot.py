"""`uer-ds plot`: learning curves of one or several runs (training loss and accuracy per target, learning
rate, dev/test numbers), one PNG/SVG per quantity, runs overlaid (uer_ds.tools.plot)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="a run's --metrics_path file, or a directory with its TensorBoard event files "
                             "(e.g. the output_model_path of pretrain/finetune)")
    parser.add_argument("--output_dir", required=True, help="where the figures go (<quantity>.png)")
    parser.add_argument("--labels", nargs="+", help="the runs' names in the legends (default: file or folder names)")
    parser.add_argument("--quantities", nargs="+", metavar="NAME",
                        help="only these, e.g. loss lr mlm_acc dev/accuracy (default: everything the runs logged)")
    parser.add_argument("--format", dest="image_format", choices=("png", "svg"), default="png",
                        help="image format (default png)")


def run(args: argparse.Namespace) -> int:
    from uer_ds.tools.plot import plot_runs

    written = plot_runs(args.runs, args.output_dir, args.labels, args.quantities, args.image_format)
    print(f"wrote {len(written)} figure(s) to {args.output_dir}: {', '.join(p.name for p in written)}")
    return 0
