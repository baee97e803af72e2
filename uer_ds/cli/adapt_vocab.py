"""`uer-ds adapt-vocab`: a pre-trained model's rows carried over to a new vocabulary (UER-py's
scripts/dynamic_vocab_adapter.py; its flag names work)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--load_model_path", "--old_model_path", required=True,
                        help="a uer_ds training run or global_step<N> tag, model directory, Hugging Face directory, or "
                             "UER-py/TencentPretrain .bin (its config: --config_path, else the one beside it)")
    parser.add_argument("--config_path", default=None,
                        help="UER JSON model config of a .bin model (default: <name>_config.json or config.json beside "
                             "it)")
    parser.add_argument("--vocab_path", "--old_vocab_path", required=True,
                        help="the vocabulary the model was trained with")
    parser.add_argument("--new_vocab_path", required=True, help="the vocabulary to adapt the model to")
    parser.add_argument("--output_model_path", "--new_model_path", required=True,
                        help="output: a uer_ds model directory (config.json + model.safetensors)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the new tokens' rows (default 7)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from uer_ds.convert.resolve import resolve_model
    from uer_ds.models import save_model
    from uer_ds.tokenizers import Vocab
    from uer_ds.tools.adapt_vocab import adapt_vocab

    output = Path(args.output_model_path)
    if output.exists() and not (output.is_dir() and not any(output.iterdir())):
        try:  # an earlier output of this command may be replaced, nothing else
            resolve_model(output, "--output_model_path", kinds=("model",))
        except ValueError:
            raise FileExistsError(f"--output_model_path {output}: exists and is not a model directory; give a new "
                                  "path") from None
    source = resolve_model(args.load_model_path, "--load_model_path", config_path=args.config_path)
    if source.kind == "task":
        raise ValueError(f"{args.load_model_path}: a fine-tuned task model; adapt the pre-trained model it came from, "
                         "then fine-tune it with the new vocabulary")
    model = source.model(uer_layer_norm=False)
    adapted, counts = adapt_vocab(model, Vocab.load(args.vocab_path), Vocab.load(args.new_vocab_path), args.seed)
    save_model(adapted, output)
    print(f"vocab_size {model.config.vocab_size} -> {adapted.config.vocab_size}: {counts['kept']} tokens kept their "
          f"rows, {counts['new']} new tokens initialised, {counts['dropped']} old tokens dropped -> {output}")
    return 0
