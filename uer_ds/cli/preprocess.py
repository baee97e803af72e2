"""`uer-ds preprocess`: corpus -> OUT.bin + OUT.idx + OUT.json (UER-py's flag names)."""
from __future__ import annotations

import argparse
import os

from uer_ds.cli.common import add_tokenizer_arguments, tokenizer_from_args
from uer_ds.data.registry import DATA_PROCESSORS


def _defaults():
    from uer_ds.data.preprocessing import PreprocessOptions

    return PreprocessOptions()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = _defaults()
    parser.add_argument("--corpus_path", required=True,
                        help="text corpus: one document per line (mlm, lm, bilm, capitalization); sentences with "
                             "blank lines between documents (bert, albert, token_document, sentence_reorder, "
                             "sentence_distance, discourse); label<TAB>text_a[<TAB>text_b] (cls); "
                             "query<TAB>title<TAB>label (ir_relevance)")
    parser.add_argument("--dataset_path", default="dataset",
                        help="output prefix OUT: writes OUT.bin, OUT.idx, OUT.json (default 'dataset')")
    add_tokenizer_arguments(parser)
    parser.add_argument("--target", "--data_processor", dest="data_processor", default=d.data_processor,
                        choices=tuple(DATA_PROCESSORS), help=f"the data processor (default {d.data_processor})")
    parser.add_argument("--seq_length", type=int, default=d.seq_length, help=f"tokens per instance (default {d.seq_length})")
    parser.add_argument("--processes_num", type=int, default=1, help="worker processes over byte ranges (default 1)")
    parser.add_argument("--dup_factor", type=int, default=d.dup_factor,
                        help=f"mlm/bert/albert: copies with different masks and pairs (default {d.dup_factor})")
    parser.add_argument("--short_seq_prob", type=float, default=d.short_seq_prob,
                        help=f"bert/albert: chance of a shorter target length (default {d.short_seq_prob})")
    parser.add_argument("--full_sentences", action="store_true", help="mlm/lm: pack documents into full windows")
    parser.add_argument("--dynamic_masking", action="store_true", help="new masks every epoch")
    parser.add_argument("--whole_word_masking", action="store_true",
                        help="mask whole words; words are the corpus's whitespace-separated units (pre-segment "
                             "Chinese with any word segmenter) and WordPiece continuations")
    parser.add_argument("--span_masking", action="store_true", help="mask spans of geometric length")
    parser.add_argument("--span_geo_prob", type=float, default=d.span_geo_prob,
                        help=f"span masking: geometric p (default {d.span_geo_prob})")
    parser.add_argument("--span_max_length", type=int, default=d.span_max_length,
                        help=f"span masking: longest span (default {d.span_max_length})")
    from uer_ds.data.knowledge import KNOWLEDGE_UNITS
    from uer_ds.tokenizers.segment import SEGMENTERS

    knowledge = parser.add_argument_group("knowledge masking (ERNIE 1.0)")
    knowledge.add_argument("--masking", default=d.masking, choices=("none",) + tuple(KNOWLEDGE_UNITS),
                           help="mask whole units: the segmenter's words, phrases (noun-phrase chunks) or named "
                                "entities, plus --lexicon_path entries; mixed with basic token masking by "
                                "--knowledge_masking_prob (default none)")
    knowledge.add_argument("--segmenter", default=d.segmenter, choices=tuple(SEGMENTERS),
                           help=f"word segmenter of the units (default {d.segmenter})")
    knowledge.add_argument("--lexicon_path", help="entities/phrases masked as units wherever they occur, one per line")
    knowledge.add_argument("--knowledge_masking_prob", type=float, default=d.knowledge_masking_prob,
                           help="share of instances masked by units; the others get basic token masking "
                                f"(default {d.knowledge_masking_prob})")
    ernie = parser.add_argument_group("ERNIE 2.0's tasks (--target capitalization, token_document, sentence_reorder, "
                                      "sentence_distance, discourse, ir_relevance)")
    ernie.add_argument("--sentence_reorder_segments", type=int, default=d.sentence_reorder_segments,
                       help="sentence_reorder: a paragraph is cut into 1..M segments; sum of k! (k = 1..M) classes "
                            f"(default {d.sentence_reorder_segments})")
    ernie.add_argument("--discourse_markers", default=d.discourse_markers,
                       help="discourse: the marker list, zh or en (shipped) or a file of one marker per line; a "
                            f"marker's class is its line (default {d.discourse_markers})")
    ernie.add_argument("--stop_tokens_num", type=int, default=d.stop_tokens_num,
                       help="token_document: the corpus's N most frequent tokens (with punctuation and special "
                            f"tokens) get no label (default {d.stop_tokens_num})")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"seed of the instances (default {d.seed})")
    parser.add_argument("--docs_buffer_size", type=int, default=None,
                        help="accepted for UER-py compatibility; unused (every document is in the pool)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from uer_ds.data.ernie_corpora import keep_path
    from uer_ds.data.mmap_dataset import dataset_prefix
    from uer_ds.data.preprocessing import PreprocessOptions, preprocess

    tokenizer = tokenizer_from_args(args)
    if tokenizer is None:
        raise ValueError("give --vocab_path or --spm_model_path")
    options = PreprocessOptions(
        data_processor=args.data_processor, seq_length=args.seq_length, dup_factor=args.dup_factor,
        short_seq_prob=args.short_seq_prob, full_sentences=args.full_sentences, dynamic_masking=args.dynamic_masking,
        whole_word_masking=args.whole_word_masking, span_masking=args.span_masking, span_geo_prob=args.span_geo_prob,
        span_max_length=args.span_max_length, masking=args.masking, segmenter=args.segmenter,
        lexicon_path=os.path.abspath(args.lexicon_path) if args.lexicon_path else None,
        knowledge_masking_prob=args.knowledge_masking_prob, seed=args.seed,
        sentence_reorder_segments=args.sentence_reorder_segments, stop_tokens_num=args.stop_tokens_num,
        discourse_markers=keep_path(args.discourse_markers))
    meta = preprocess(args.corpus_path, args.dataset_path, tokenizer, options, processes_num=args.processes_num,
                      progress=not args.no_progress)
    c = meta["counts"]
    prefix = dataset_prefix(args.dataset_path)
    disk = os.path.getsize(prefix + ".bin") + os.path.getsize(prefix + ".idx")
    print(f"wrote {prefix}.bin, {prefix}.idx, {prefix}.json ({disk / 1e6:.2f} MB, {disk / max(c['tokens'], 1):.2f} "
          f"bytes/token, {meta['dtype']})")
    print(f"{c['documents']:,} documents, {c['sequences']:,} sequences, {c['tokens']:,} tokens "
          f"({c['unk_tokens']:,} unknown); {c['lines']:,} lines, {c['blank_lines']:,} blank, "
          f"{c['empty_lines']:,} without tokens")
    rate = meta["corpus"]["bytes"] / max(meta["seconds"], 1e-9) / 1e6
    print(f"target {meta['data_processor']}, seq_length {meta['seq_length']}, {args.processes_num} process(es), "
          f"{meta['seconds']:.2f} s ({rate:.1f} MB/s)")
    return 0
