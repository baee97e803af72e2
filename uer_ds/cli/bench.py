"""`uer-ds bench <what>`: benchmarks that print a table and write JSON (never timed tests).

BENCHMARKS is the one list: name -> (module, one-line help).  A benchmark module provides
`add_arguments(parser)` and `run(args) -> int`, like a command.
"""
from __future__ import annotations

import argparse
import importlib

BENCHMARKS: dict[str, tuple[str, str]] = {
    "kernels": ("uer_ds.kernels.bench", "Triton LayerNorm GB/s and attention TFLOP/s vs torch eager, torch.compile, "
                                        "SDPA (GPU; --interpret: CPU smoke run)"),
    "preprocess": ("uer_ds.data.bench", "preprocessing MB/s, tokens/s, bytes/token vs HF tokenizers and pure Python"),
    "pretrain": ("uer_ds.engine.bench", "training tokens/s and peak memory for a model config and ds_config"),
    "finetune": ("uer_ds.cli.bench_finetune", "fine-tuning steps/s of a classifier on a real TSV: real tokens/s, padding "
                                       "share (e.g. --kernels triton vs torch)"),
    "infer": ("uer_ds.deploy.bench_infer", "prediction texts/s, p50/p99 ms and accuracy: PyTorch eager vs ONNX fp32 "
                                           "vs ONNX int8, at batch 1 and 32"),
    "serve": ("uer_ds.deploy.bench", "`uer-ds serve` under concurrent clients over loopback: requests/s, p50/p99 "
                                     "latency, dynamic batching vs batch 1"),
    "overhead": ("uer_ds.engine.overhead", "host work per training step (aten ops, host syncs, ms per phase; graph "
                                           "breaks), counted on the CPU for a model's structure at a small width"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="{" + ",".join(BENCHMARKS) + "}")
    for name, (module_name, help_) in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=help_, description=help_))


def run(args: argparse.Namespace) -> int:
    return int(importlib.import_module(BENCHMARKS[args.benchmark][0]).run(args) or 0)
