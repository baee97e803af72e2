"""`uer-ds evaluate --load_model_path MODEL --test_path split.tsv [--output_dir D]`: a fine-tuned model
(task directory or ONNX export) on any labelled split, reported as the dev set is during fine-tuning:
metrics, per-class table, confusion matrix, top-k accuracy, bad cases -> JSON and TSV
(uer_ds/deploy/evaluate.py describes the files)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from uer_ds.cli.common import add_tokenizer_arguments

    parser.add_argument("--load_model_path", required=True,
                        help="a task directory written by `uer-ds finetune`, or an .onnx from `uer-ds export onnx`")
    parser.add_argument("--test_path", required=True,
                        help="a labelled split in the task's format (the training file's columns; train included)")
    parser.add_argument("--output_dir", help="where report.json, per_class.tsv, confusion.tsv and bad_cases.tsv go "
                                             "(default: eval_<test file stem> in the current directory)")
    parser.add_argument("--head", help="multi-task models: the head to evaluate (default: the first)")
    parser.add_argument("--batch_size", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--seq_length", type=int, help="longest input (default: the fine-tuning seq_length)")
    parser.add_argument("--top_k", type=int, default=2,
                        help="also report top-k accuracy, classifiers with more than k labels (default 2; 1: off)")
    parser.add_argument("--no_header", action="store_true", default=None,
                        help="a file without a header row (PaddleNLP's text_a[<TAB>text_b]<TAB>label; default: as the "
                             "model was fine-tuned)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    add_tokenizer_arguments(parser, subwords=True)


def run(args: argparse.Namespace) -> int:
    from uer_ds.deploy.evaluate import run_evaluate

    return run_evaluate(args)
