"""Arguments the model tools share, with UER-py's flag names (--load_model_path, --test_path, ...).

Every tool also takes UER-py's older spellings (uer_ds.compat.FLAG_ALIASES["tool"]: --pretrained_model_path,
--input_path, --output_path, ...) and the model-shape flags UER-py's scripts take (--encoder, --target,
--layers_num, ...: they describe a UER-py .bin, and must agree with a model directory's own config).
A new tool calls `add_model_tool_arguments` and `tokenizer_and_model`; a tool with other model-file
flags gives them UER-py's spellings with `uer_ds.compat.add_flag_aliases(parser, "tool")`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Union

from uer_ds.cli.common import add_model_arguments, add_tokenizer_arguments, tokenizer_from_args


def add_model_tool_arguments(parser: argparse.ArgumentParser, output_required: bool = False,
                             input_required: bool = True) -> None:
    from uer_ds.compat import add_flag_aliases

    parser.add_argument("--load_model_path", required=True,
                        help="a uer_ds training run or one of its global_step<N> tags, a model directory, a fine-tuned "
                             "task directory (its encoder), a Hugging Face directory (BERT, RoBERTa, ALBERT, GPT-2), "
                             "or a UER-py/TencentPretrain .bin (uer_ds.convert.resolve)")
    parser.add_argument("--test_path", required=input_required, help="input text, one item per line (UTF-8)")
    parser.add_argument("--prediction_path", required=output_required, default=None,
                        help="output file" + ("" if output_required else " (default: standard output)"))
    parser.add_argument("--seq_length", type=int, default=128, help="tokens per line at most (default 128)")
    parser.add_argument("--batch_size", type=int, default=32, help="lines per forward pass (default 32)")
    add_tokenizer_arguments(parser, subwords=True)  # UER-py 2020's cloze_test.py / generate.py took it
    add_flag_aliases(parser, "tool")


def add_model_shape_arguments(parser: argparse.ArgumentParser) -> None:
    """--config_path (a .bin's config: default beside it, else bert/base) and the model-config flags;
    call after the tool's own flags (a flag the tool defines, --pooling say, stays the tool's)."""
    own = tuple(a.dest for a in parser._actions)  # noqa: SLF001
    add_model_arguments(parser, model_flag="--load_model_path", exclude=own)


def tokenizer_and_model(args: argparse.Namespace, need_target: Union[None, str, tuple[str, ...]] = None):
    """The vocabulary and the model --load_model_path names (any kind the resolver knows but ONNX): a
    state-dict file (a UER-py .bin) is built from --config_path (default: the config beside it) and the
    model-shape flags; a directory from its own config, which the flags given must agree with; --kernels
    applies to both.  The model must fit the vocabulary and have a target the tool needs."""
    from uer_ds.tools.common import check_model_for

    tokenizer = tokenizer_from_args(args)
    if tokenizer is None:
        raise ValueError("give the model's vocabulary: --vocab_path or --spm_model_path")
    if args.seq_length <= 0:
        raise ValueError(f"seq_length has value {args.seq_length}: must be positive")
    if getattr(tokenizer, "subwords", None) is not None:
        raise ValueError(f"--sub_vocab_path {args.sub_vocab_path}: the model tools do not compute subword features "
                         "(a model with subword_type char is fine-tuned and inferred with `uer-ds finetune` / "
                         "`uer-ds infer`); leave the flag out")
    return tokenizer, check_model_for(load_tool_model(args, tokenizer), tokenizer, need_target, args.load_model_path)


def load_tool_model(args: argparse.Namespace, tokenizer):
    """The Model --load_model_path names, as tokenizer_and_model describes (no checks against the tokenizer)."""
    from uer_ds.cli.common import check_model_flags, model_config_with_vocab, resolve_config_default
    from uer_ds.convert.resolve import resolve_model

    source = resolve_model(args.load_model_path, "--load_model_path", config_path=args.config_path)
    if source.kind in ("uer", "weights"):
        base, _, config_path = resolve_config_default(args.config_path, source)
        return source.model(model_config_with_vocab(args, tokenizer, base=base, config_path=config_path))
    cfg = check_model_flags(args, source.own_config(), args.load_model_path)
    return source.model(kernels=cfg.kernels)


def write_text(text: str, path: Optional[str]) -> None:
    """To `path` (written whole: a temporary name, then renamed), or to standard output."""
    if path is None:
        sys.stdout.write(text)
        return
    from uer_ds.convert.rules import new_file

    with new_file(Path(path), overwrite=True) as tmp:
        tmp.write_text(text, encoding="utf-8")
