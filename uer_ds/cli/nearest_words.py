"""`uer-ds nearest-words`: the words nearest to each given word, by cosine similarity."""
from __future__ import annotations

import argparse

from uer_ds.cli.tool_args import add_model_tool_arguments, tokenizer_and_model, write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_tool_arguments(parser)
    parser.add_argument("--mode", choices=("independent", "dependent"), default="independent",
                        help="independent: word embeddings, lines are words; dependent: hidden states, lines are "
                             "'word<TAB>sentence'")
    parser.add_argument("--topn", type=int, default=10, help="neighbours per word (default 10)")
    parser.add_argument("--cand_vocab_path", default=None,
                        help="dependent mode: candidate words, one per line (default: the whole vocabulary)")


def run(args: argparse.Namespace) -> int:
    from uer_ds.textfile import split_fields, strip_blank
    from uer_ds.tokenizers import Vocab
    from uer_ds.tools.common import read_lines, require_text
    from uer_ds.tools.nearest import format_neighbours, nearest_dependent, nearest_independent

    if args.topn <= 0:
        raise ValueError(f"topn has value {args.topn}: must be positive")
    lines = read_lines(args.test_path)
    require_text(lines, "every line is " + ("a word" if args.mode == "independent" else "'word<TAB>sentence'"))
    items = []
    for where, text in lines:
        fields = split_fields(text)
        if len(fields) != (1 if args.mode == "independent" else 2):
            raise ValueError(f"{where}: {len(fields)} tab-separated field(s): every line is "
                             + ("a word" if args.mode == "independent" else "'word<TAB>sentence'"))
        items.append((where, *map(strip_blank, fields)))
    tokenizer, model = tokenizer_and_model(args)
    if args.mode == "independent":
        results = nearest_independent(model, tokenizer, items, args.topn)
    else:
        candidates = Vocab.load(args.cand_vocab_path).id_to_token if args.cand_vocab_path else None
        results = nearest_dependent(model, tokenizer, items, args.topn, candidates, args.batch_size, args.seq_length)
    write_text(format_neighbours(results), args.prediction_path)
    return 0
