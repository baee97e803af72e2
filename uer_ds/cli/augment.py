"""`uer-ds augment --input_path train.tsv --output_path aug.tsv`: easy data augmentation (EDA: random swap,
deletion, insertion, synonym replacement; Wei & Zou 2019) of text classification data, labels kept
(uer_ds/tasks/augment.py describes the operations).  Synonyms from a file of groups (--synonyms_path) or
from a model's embedding neighbours (--load_model_path with its vocabulary, as `uer-ds nearest-words`)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from uer_ds.cli.common import add_tokenizer_arguments
    from uer_ds.cli.tool_args import add_model_shape_arguments
    from uer_ds.tasks.augment import OPS, SEGMENTS

    parser.add_argument("--input_path", required=True,
                        help="UER-py classification TSV: header 'label<TAB>text_a[<TAB>text_b]' (other columns copied)")
    parser.add_argument("--output_path", required=True, help="the augmented TSV (same header)")
    parser.add_argument("--aug_per_example", type=int, default=4, help="augmented copies of each example (default 4)")
    parser.add_argument("--keep_original", action="store_true", help="write each example too, before its copies")
    parser.add_argument("--ops", default=None,
                        help=f"comma-separated operations, of {','.join(OPS)} (default: all four with a synonym source, "
                             "else swap,delete)")
    for op, alpha in (("swap", "alpha_rs"), ("delete", "p_rd"), ("insert", "alpha_ri"), ("synonym", "alpha_sr")):
        parser.add_argument(f"--{op}_rate", type=float, default=0.1,
                            help=f"EDA's {alpha}: the share of words the {op} operation changes (default 0.1)")
    parser.add_argument("--segment", choices=SEGMENTS, default="jieba",
                        help="words: jieba (Chinese word segmentation; default), char (every character but white "
                             "space), space (white-space-separated words: English)")
    parser.add_argument("--seed", type=int, default=7, help="random seed: the same seed, input and flags give the same "
                                                            "output (default 7)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    source = parser.add_argument_group("synonyms (for insert and synonym)")
    source.add_argument("--synonyms_path", help="synonym groups, one per line: at least two words separated by spaces "
                                                "or tabs ('#' starts a comment line)")
    source.add_argument("--load_model_path", "--model_path", dest="load_model_path",
                        help="a model whose word-embedding neighbours are the synonyms (needs --vocab_path); any model "
                             "`uer-ds nearest-words` reads")
    source.add_argument("--synonym_topn", type=int, default=5,
                        help="with --load_model_path: neighbours per word (default 5)")
    source.add_argument("--min_similarity", type=float, default=None,
                        help="with --load_model_path: only neighbours at least this cosine similarity")
    add_tokenizer_arguments(parser)
    parser.set_defaults(seq_length=128)
    add_model_shape_arguments(parser)


def _settings(args: argparse.Namespace, has_synonyms: bool):
    from uer_ds.tasks.augment import OPS, AugmentSettings

    if args.ops is None:
        ops = OPS if has_synonyms else ("swap", "delete")
    else:
        ops = tuple(op.strip() for op in args.ops.split(",") if op.strip())
    rates = {op: getattr(args, f"{op}_rate") for op in OPS}
    return AugmentSettings(ops, rates, args.aug_per_example, args.seed)


def _synonyms(args: argparse.Namespace, segment, header, rows):
    from uer_ds.tasks.augment import TEXT_COLUMNS, SynonymTable

    if args.synonyms_path and args.load_model_path:
        raise ValueError("give one synonym source: --synonyms_path or --load_model_path")
    if args.synonyms_path:
        return SynonymTable.from_file(args.synonyms_path)
    if not args.load_model_path:
        return None
    from uer_ds.cli.tool_args import tokenizer_and_model

    tokenizer, model = tokenizer_and_model(args)
    columns = [c for c in TEXT_COLUMNS if c in header]
    words = (w for row in rows for c in columns for w in segment(row.values[c]).words)
    return SynonymTable.from_embeddings(model, tokenizer, words, args.synonym_topn, args.min_similarity)


def run(args: argparse.Namespace) -> int:
    from uer_ds.tasks.augment import augment_rows, read_rows, segmenter, write_tsv

    header, rows = read_rows(args.input_path)
    segment = segmenter(args.segment)
    has_synonyms = bool(args.synonyms_path or args.load_model_path)
    settings = _settings(args, has_synonyms)
    settings.check(has_synonyms)  # before a model loads
    synonyms = _synonyms(args, segment, header, rows)
    result = augment_rows(header, rows, settings, segment, synonyms, args.keep_original, not args.no_progress)
    write_tsv(args.output_path, result.header, result.rows)
    ops = ", ".join(f"{op} {n}" for op, n in result.by_op.items())
    where = f"; synonyms: {synonyms.source} ({len(synonyms.table)} words)" if synonyms is not None else ""
    print(f"uer-ds augment: {result.examples} example(s) -> {len(result.rows)} row(s) in {args.output_path} "
          f"({result.copies} augmented: {ops}; {result.unchanged} equal to their example){where}",
          flush=True)
    return 0
