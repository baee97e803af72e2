"""`uer-ds generate`: continue each line of --test_path with a GPT-style model (lm target), or decode each
line's target with a sequence-to-sequence model (s2s target)."""
from __future__ import annotations

import argparse

from uer_ds.cli.tool_args import (add_model_shape_arguments, add_model_tool_arguments, tokenizer_and_model,
                                  write_text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_tool_arguments(parser)
    group = parser.add_argument_group("decoding")
    group.add_argument("--max_length", type=int, default=None,
                       help="lm: tokens in all, prompt included; s2s: target tokens at most "
                            "(default: --seq_length, as UER-py's generate scripts)")
    group.add_argument("--greedy", action="store_true", help="always the most likely token (no sampling)")
    group.add_argument("--top_k", type=int, default=0, help="sample among the k most likely tokens (0: all)")
    group.add_argument("--top_p", type=float, default=0.0,
                       help="sample among the fewest tokens whose probability reaches p (0: all)")
    group.add_argument("--temperature", type=float, default=1.0, help="divide the logits by it (default 1)")
    group.add_argument("--seed", type=int, default=7, help="sampling seed; one seed gives one output (default 7)")
    group.add_argument("--no_cache", action="store_true", help="recompute the whole sequence at every step")
    group.add_argument("--stop_at_sep", action="store_true",
                       help="lm: end a line's continuation at [SEP] (s2s always ends its target there)")
    add_model_shape_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from uer_ds.textfile import is_blank
    from uer_ds.tools.common import detokenize, read_lines
    from uer_ds.tools.generate import Sampling, generate, generate_s2s

    sampling = Sampling(greedy=args.greedy, top_k=args.top_k, top_p=args.top_p, temperature=args.temperature)
    lines = read_lines(args.test_path)
    tokenizer, model = tokenizer_and_model(args, need_target=("lm", "s2s"))
    cls, sep = tokenizer.special_id("cls"), tokenizer.special_id("sep")
    s2s = "lm" not in model.target
    if s2s and (cls is None or sep is None):
        raise ValueError(f"{tokenizer.vocab.source}: an s2s model reads [CLS] source [SEP] and decodes from [CLS] "
                         "to [SEP]; the vocabulary lacks them")
    out = []
    for where, text in tqdm(lines, desc="generate", disable=None):
        if is_blank(text):  # no prompt: an empty output line keeps line k of the output on line k of the input
            out.append("")
            continue
        try:
            if s2s:  # the source as the s2s data processor builds it: [CLS] source [SEP], cut to seq_length
                source = [cls] + tokenizer.encode(text)[: max(args.seq_length - 2, 1)] + [sep]
                ids = generate_s2s(model, source, args.max_length or args.seq_length, cls, sampling, seed=args.seed,
                                   use_cache=not args.no_cache, stop_id=sep)
            else:
                prompt = ([cls] if cls is not None else []) + tokenizer.encode(text)  # UER-py starts with [CLS]
                ids = generate(model, prompt, args.max_length or args.seq_length, sampling, seed=args.seed,
                               use_cache=not args.no_cache, stop_id=sep if args.stop_at_sep else None)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        specials = {t for t in tokenizer.special_tokens.values() if t} - {tokenizer.special_tokens["unk"]}
        tokens = [t for t in tokenizer.convert_ids_to_tokens(ids) if t not in specials]
        out.append(detokenize(tokenizer, tokens))
    write_text("\n".join(out) + "\n", args.prediction_path)
    return 0
