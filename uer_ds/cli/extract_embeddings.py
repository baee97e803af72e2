"""`uer-ds extract-embeddings`: the word embedding matrix with its vocabulary (UER-py's
scripts/extract_embeddings.py; its flag names work)."""
from __future__ import annotations

import argparse

from uer_ds.cli.common import add_tokenizer_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--load_model_path", required=True,
                        help="a uer_ds training run or global_step<N> tag, model directory or fine-tuned task directory, "
                             "a Hugging Face directory, or a UER-py/TencentPretrain .bin (its config: --config_path, "
                             "else the one beside it)")
    parser.add_argument("--config_path", default=None,
                        help="UER JSON model config of a .bin model (default: <name>_config.json or config.json beside "
                             "it, else bert/base)")
    parser.add_argument("--output_path", "--word_embedding_path", required=True,
                        help="output: a text file (word2vec format), or with --format npy OUT.npy + OUT.vocab.txt")
    parser.add_argument("--format", choices=("text", "npy"), default=None,
                        help="text or npy (default: npy when the output ends in .npy, else text)")
    add_tokenizer_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from uer_ds.cli.common import tokenizer_from_args
    from uer_ds.cli.tool_args import load_tool_model
    from uer_ds.tools.common import check_model_for
    from uer_ds.tools.embeddings import embedding_matrix, write_embeddings

    tokenizer = tokenizer_from_args(args)
    if tokenizer is None:
        raise ValueError("give the model's vocabulary: --vocab_path or --spm_model_path")
    model = check_model_for(load_tool_model(args, tokenizer), tokenizer, path=args.load_model_path)
    fmt = args.format or ("npy" if str(args.output_path).endswith(".npy") else "text")
    matrix = embedding_matrix(model)
    files = write_embeddings(matrix, tokenizer, args.output_path, fmt)
    print(f"{matrix.shape[0]} x {matrix.shape[1]} word embedding ({fmt}) -> {', '.join(map(str, files))}")
    return 0
