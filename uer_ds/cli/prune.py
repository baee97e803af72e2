"""`uer-ds prune --load_model_path TASK_DIR --train_path train.tsv --width_mult 0.5 --output_model_path OUT`:
structured width pruning of a fine-tuned transformer classifier -- attention heads and feed-forward neurons
ranked by Michel et al. (2019)'s gradient importance on --train_path, the top --width_mult kept in every layer
(uer_ds/deploy/prune.py); OUT is a normal task directory (its config records the new widths) plus prune.json.
Recover accuracy afterwards by fine-tuning OUT, or distilling from the unpruned model (`--soft_targets`)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from uer_ds.cli.common import add_tokenizer_arguments

    parser.add_argument("--load_model_path", required=True, help="a task directory written by `uer-ds finetune` "
                                                                 "(transformer encoder, classifier task)")
    parser.add_argument("--train_path", required=True,
                        help="labelled examples in the task's format to score heads and neurons on (usually the "
                             "training split)")
    parser.add_argument("--width_mult", type=float, required=True,
                        help="fraction of heads and of feed-forward neurons kept in every layer, in (0, 1]; the "
                             "count is floor(width_mult * n), e.g. 0.5 keeps 6 of 12 heads and 1536 of 3072 neurons")
    parser.add_argument("--output_model_path", required=True, help="directory for the pruned task model")
    parser.add_argument("--batch_size", type=int, default=32, help="examples per backward pass (default 32)")
    parser.add_argument("--max_examples", type=int, help="score on the first N examples only (default: all)")
    parser.add_argument("--seq_length", type=int, help="longest input (default: the fine-tuning seq_length)")
    parser.add_argument("--no_header", action="store_true", default=None,
                        help="a file without a header row (default: as the model was fine-tuned)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    add_tokenizer_arguments(parser, subwords=True)


def run(args: argparse.Namespace) -> int:
    from uer_ds.deploy.prune import run_prune

    return run_prune(args)
