"""`uer-ds plan`: memory per rank for ZeRO 0-3 with and without offload, and a recommended ds_config."""
from __future__ import annotations

import argparse
import json

from uer_ds.cli.common import add_model_arguments, add_tokenizer_arguments, model_config_with_vocab, tokenizer_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpus", type=int, default=1, help="GPUs per node (default 1)")
    parser.add_argument("--nodes", type=int, default=1, help="nodes (default 1)")
    parser.add_argument("--gpu_memory", type=float, default=80.0, help="GiB per GPU (default 80)")
    parser.add_argument("--cpu_memory", type=float, help="GiB of CPU memory per node (offload limit)")
    parser.add_argument("--seq_length", type=int, default=512, help="training sequence length (default 512)")
    parser.add_argument("--precision", choices=("bf16", "fp16", "fp32"), default="bf16",
                        help="the training precision the estimate assumes (default bf16)")
    parser.add_argument("--flash", action="store_true", help="attention kernels that keep no attention matrix")
    parser.add_argument("--activation_checkpointing", action="store_true",
                        help="estimate activations with layer recomputation (pretrain --activation_checkpointing)")
    parser.add_argument("--json_path", help="also write the plan as JSON")
    add_model_arguments(parser)
    add_tokenizer_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from uer_ds.engine.plan import format_plan, plan

    for key in ("gpus", "nodes", "gpu_memory", "seq_length"):
        if getattr(args, key) <= 0:
            raise ValueError(f"--{key} has value {getattr(args, key)}: must be positive")
    cfg = model_config_with_vocab(args, tokenizer_from_args(args))
    if cfg.vocab_size == 0:
        cfg = cfg.replace(vocab_size=21128)  # Google's Chinese BERT vocabulary, UER-py's default
        print("(no vocabulary given: assuming vocab_size 21128)")
    rows, best, params, largest = plan(cfg, args.gpus, args.gpu_memory, args.nodes, args.cpu_memory,
                                       args.seq_length, args.precision != "fp32", args.flash,
                                       args.activation_checkpointing)
    print(format_plan(rows, best, params, largest, args.gpus, args.nodes, args.gpu_memory, args.seq_length,
                      args.precision))
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as f:
            json.dump({"parameters": params, "largest_module": largest,
                       "rows": [{"ds_config": r.setup.name, "gpu_states_gb": r.gpu_states_gb,
                                 "cpu_states_gb": r.cpu_states_gb,
                                 "activations_per_sample_gb": r.activations_per_sample_gb,
                                 "micro_batch": r.micro_batch} for r in rows],
                       "recommended": best.setup.name if best else None}, f, indent=2)
    return 0
