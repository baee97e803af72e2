"""`uer-ds nearest-words`: the words nearest to each given word, by cosine similarity."""
from __future__ import annotations

import argparse

from uer_ds.cli.tool_args import (add_model_shape_arguments, add_model_tool_arguments, tokenizer_and_model,
                                  write_text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_tool_arguments(parser, input_required=False)
    parser.add_argument("--mode", choices=("independent", "dependent"), default=None,
                        help="independent (default): word embeddings, lines are words (UER-py's topn_words_indep.py; "
                             "--target_words_path names the same file); dependent: hidden states, lines are "
                             "'word<TAB>sentence'")
    parser.add_argument("--sent_path", default=None,
                        help="UER-py's topn_words_dep.py input: 'sentence<TAB>word' lines (implies --mode dependent)")
    parser.add_argument("--topn", type=int, default=10, help="neighbours per word (default 10)")
    parser.add_argument("--cand_vocab_path", default=None,
                        help="candidate words, one per line (default: the whole vocabulary)")
    add_model_shape_arguments(parser)


def _inputs(args: argparse.Namespace) -> tuple[str, str, bool]:
    """(mode, input file, whether lines are UER-py's 'sentence<TAB>word')."""
    if args.sent_path and args.test_path:
        raise ValueError("give one input: --test_path (or --target_words_path) or --sent_path")
    if args.sent_path:
        if args.mode == "independent":
            raise ValueError("--sent_path holds sentences: it goes with --mode dependent")
        return "dependent", args.sent_path, True
    if not args.test_path:
        raise ValueError("give the input: --test_path (UER-py: --target_words_path, or --sent_path for sentences)")
    return args.mode or "independent", args.test_path, False


def run(args: argparse.Namespace) -> int:
    from uer_ds.textfile import split_fields, strip_blank
    from uer_ds.tokenizers import Vocab
    from uer_ds.tools.common import read_lines, require_text
    from uer_ds.tools.nearest import format_neighbours, nearest_dependent, nearest_independent

    if args.topn <= 0:
        raise ValueError(f"topn has value {args.topn}: must be positive")
    mode, path, sentence_first = _inputs(args)
    layout = "a word" if mode == "independent" else \
        ("'sentence<TAB>word'" if sentence_first else "'word<TAB>sentence'")
    lines = read_lines(path)
    require_text(lines, f"every line is {layout}")
    items = []
    for where, text in lines:
        fields = split_fields(text)
        if len(fields) != (1 if mode == "independent" else 2):
            raise ValueError(f"{where}: {len(fields)} tab-separated field(s): every line is {layout}")
        if sentence_first:
            fields = fields[::-1]
        items.append((where, *map(strip_blank, fields)))
    tokenizer, model = tokenizer_and_model(args)
    candidates = Vocab.load(args.cand_vocab_path).id_to_token if args.cand_vocab_path else None
    if mode == "independent":
        results = nearest_independent(model, tokenizer, items, args.topn, candidates)
    else:
        results = nearest_dependent(model, tokenizer, items, args.topn, candidates, args.batch_size, args.seq_length)
    write_text(format_neighbours(results), args.prediction_path)
    return 0
