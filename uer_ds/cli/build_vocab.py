"""`uer-ds build-vocab`: a vocabulary from a corpus, BERT's special tokens first ([PAD] = 0)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from uer_ds.tools.vocab import KINDS

    parser.add_argument("--corpus_path", nargs="+", required=True, help="text file(s), UTF-8")
    parser.add_argument("--output_path", required=True,
                        help="vocabulary file; for sentencepiece the model prefix (writes PREFIX.model, PREFIX.vocab)")
    parser.add_argument("--kind", choices=KINDS, default="wordpiece",
                        help="wordpiece (tokenizers), sentencepiece, char, space (UER-py's counting) or word (jieba's "
                             "words, counted: the vocabulary of --tokenizer word)")
    parser.add_argument("--vocab_size", type=int, default=21128, help="wordpiece / sentencepiece size (default 21128)")
    parser.add_argument("--min_count", type=int, default=1, help="least occurrences to keep a token (default 1)")
    parser.add_argument("--spm_model_type", choices=("unigram", "bpe"), default="unigram",
                        help="SentencePiece's model type with --kind sentencepiece (default unigram)")
    parser.add_argument("--do_lower_case", choices=("true", "false"), default=None,
                        help="lower-case first (default: true for wordpiece, false otherwise)")
    from uer_ds.compat import add_accepted_flags, add_flag_aliases

    add_flag_aliases(parser, "build_vocab")  # UER-py: --vocab_path, --tokenizer / --delimiter char|space
    add_accepted_flags(parser, ("--workers_num",))


def run(args: argparse.Namespace) -> int:
    from uer_ds.tools import vocab

    if args.vocab_size <= len(vocab.SPECIALS) or args.min_count < 1:
        raise ValueError(f"vocab_size ({args.vocab_size}) must exceed the {len(vocab.SPECIALS)} special tokens and "
                         f"min_count ({args.min_count}) must be >= 1")
    lower = (args.kind == "wordpiece") if args.do_lower_case is None else args.do_lower_case == "true"
    if args.kind == "wordpiece":
        size = vocab.build_wordpiece(args.corpus_path, args.output_path, args.vocab_size, args.min_count, lower)
    elif args.kind == "sentencepiece":
        if lower:
            raise ValueError("--do_lower_case true: lower-case the corpus for sentencepiece yourself; "
                             "its model does not lower-case")
        size = vocab.build_sentencepiece(args.corpus_path, args.output_path, args.vocab_size, args.spm_model_type)
    else:
        size = vocab.build_counted(args.corpus_path, args.output_path, args.kind, args.min_count, lower)
    print(f"{args.kind} vocabulary of {size} tokens -> {args.output_path}")
    return 0
