"""`uer-ds extract-embeddings`: the word embedding matrix with its vocabulary (UER-py's
scripts/extract_embeddings.py; its flag names work)."""
from __future__ import annotations

import argparse

from uer_ds.cli.common import add_tokenizer_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--load_model_path", required=True,
                        help="uer_ds model directory, checkpoint or fine-tuned task model, Hugging Face directory, or "
                             "UER-py/TencentPretrain .bin (with --config_path)")
    parser.add_argument("--config_path", default=None, help="UER JSON model config (needed for a .bin model)")
    parser.add_argument("--output_path", "--word_embedding_path", required=True,
                        help="output: a text file (word2vec format), or with --format npy OUT.npy + OUT.vocab.txt")
    parser.add_argument("--format", choices=("text", "npy"), default=None,
                        help="text or npy (default: npy when the output ends in .npy, else text)")
    add_tokenizer_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from uer_ds.cli.common import tokenizer_from_args
    from uer_ds.tools.embeddings import embedding_matrix, load_task_or_model, write_embeddings

    tokenizer = tokenizer_from_args(args)
    if tokenizer is None:
        raise ValueError("give the model's vocabulary: --vocab_path or --spm_model_path")
    model = load_task_or_model(args.load_model_path, tokenizer, args.config_path)
    fmt = args.format or ("npy" if str(args.output_path).endswith(".npy") else "text")
    matrix = embedding_matrix(model)
    files = write_embeddings(matrix, tokenizer, args.output_path, fmt)
    print(f"{matrix.shape[0]} x {matrix.shape[1]} word embedding ({fmt}) -> {', '.join(map(str, files))}")
    return 0
