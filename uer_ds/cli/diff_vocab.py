"""`uer-ds diff-vocab`: sizes, overlap and differences of two vocabulary files."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vocab_1", required=True, help="first vocabulary file")
    parser.add_argument("--vocab_2", required=True, help="second vocabulary file")
    parser.add_argument("--show", type=int, default=0, help="also list up to N tokens found in only one (default 0)")


def run(args: argparse.Namespace) -> int:
    from uer_ds.tools.vocab import diff_vocab

    d = diff_vocab(args.vocab_1, args.vocab_2)
    print(f"vocab_1: {args.vocab_1}, size: {d.size_1}")
    print(f"vocab_2: {args.vocab_2}, size: {d.size_2}")
    print(f"vocab_1 - vocab_2 = {len(d.only_1)}")
    print(f"vocab_2 - vocab_1 = {len(d.only_2)}")
    print(f"vocab_1 & vocab_2 = {d.common}")
    if args.show > 0:
        print(f"only in vocab_1: {' '.join(d.only_1[: args.show])}")
        print(f"only in vocab_2: {' '.join(d.only_2[: args.show])}")
    return 0
