"""`uer-ds analyse <what>`: analyses of a fine-tuned classifier and its data (issue 25 item 2; the modules under
uer_ds/deploy/analysis/ describe their outputs).

ANALYSES is the one list: name -> (module, one-line help); a module provides `add_arguments(parser)` and
`run(args) -> int`, like a command; Captum and cleanlab are imported only inside the
analyses that use them.
"""
from __future__ import annotations

import argparse
import importlib

ANALYSES: dict[str, tuple[str, str]] = {
    "explain": ("uer_ds.deploy.analysis.explain",
                "token attributions of each prediction by integrated gradients (Captum) -> coloured HTML + TSV"),
    "mislabelled": ("uer_ds.deploy.analysis.mislabelled",
                    "likely mislabelled training rows: confident learning (cleanlab) on out-of-fold probabilities "
                    "(--folds K fine-tunings, or --probs_path) -> TSV + JSON"),
    "support": ("uer_ds.deploy.analysis.support",
                "test rows with weak support in the training data: cosine nearest training rows in the head's "
                "pooled vectors, a support score per row -> TSV + JSON"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="analysis", required=True, metavar="{" + ",".join(ANALYSES) + "}")
    for name, (module_name, help_) in ANALYSES.items():
        importlib.import_module(module_name).add_arguments(sub.add_parser(name, help=help_, description=help_))


def run(args: argparse.Namespace) -> int:
    return int(importlib.import_module(ANALYSES[args.analysis][0]).run(args) or 0)
