"""`uer-ds bench pretrain`: training throughput and peak memory of one model config under one ds_config,
through the real engine and loop (DeepSpeed overhead included), on CPU or GPU.

Tokens/s is counted as UER-py counts it (batch_size x seq_length per step, padding included), so the
figure compares directly with UER-py's pretrain.py log; non-padding tokens/s is reported beside it, and
sequences/s, model FLOP/s (plan.training_flops_per_sequence) and MFU against the GPU's bf16 peak.
Run it under the deepspeed launcher for several processes.  Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "corpora"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config_path", default="bert/tiny", help="model config (default bert/tiny)")
    parser.add_argument("--deepspeed_config", default="zero0", help="ds_config (default zero0: plain data parallel)")
    parser.add_argument("--target", default="mlm", help="data processor to preprocess for (default mlm)")
    parser.add_argument("--dataset_path", help="an existing dataset prefix (default: the shipped corpus, "
                                               "preprocessed into a temporary directory)")
    parser.add_argument("--vocab_path", default=str(CORPUS / "vocab.txt"),
                        help="vocabulary (default: the shipped corpora/vocab.txt)")
    parser.add_argument("--corpus_path", default=str(CORPUS / "reviews.txt"),
                        help="corpus preprocessed for the run (default: the shipped corpora/reviews.txt)")
    parser.add_argument("--batch_size", type=int, default=32, help="micro-batch per process (default 32)")
    parser.add_argument("--seq_length", type=int, default=128, help="tokens per sequence (default 128)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--warmup_steps", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--accumulation_steps", type=int, default=1, help="micro-batches per step (default 1)")
    parser.add_argument("--kernels", default="auto", choices=("auto", "torch", "triton"),
                        help="LayerNorm and attention implementation (the model config key kernels; default auto)")
    parser.add_argument("--activation_checkpointing", action="store_true",
                        help="recompute layer activations in backward")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (engine.compile())")
    parser.add_argument("--check_syncs", action="store_true",
                        help="CUDA: fail on any device->host synchronisation in the timed steps "
                             "(torch.cuda.set_sync_debug_mode('error'))")
    parser.add_argument("--peak_tflops", type=float,
                        help="the GPU's dense bf16 peak for MFU (default: the datasheet figure for H100/H200/A100)")
    parser.add_argument("--json_path", help="write the result as JSON")


def _mfu(cfg, args: argparse.Namespace, samples_per_s: float, on_gpu: bool) -> dict:
    """Model FLOP/s (plan.training_flops_per_sequence x sequences/s) and MFU against the bf16 peak."""
    import torch

    from uer_ds.engine.plan import bf16_peak_tflops, training_flops_per_sequence

    if cfg.encoder != "transformer":
        return {}
    masked = 0.15 * args.seq_length if "mlm" in cfg.target else (args.seq_length if "lm" in cfg.target else 0)
    flops = training_flops_per_sequence(cfg, args.seq_length, masked)
    out = {"model_gflop_per_sequence": flops / 1e9, "model_tflops_per_s": flops * samples_per_s / 1e12}
    peak = args.peak_tflops or (bf16_peak_tflops(torch.cuda.get_device_name()) if on_gpu else None)
    if peak:
        out.update(peak_bf16_tflops=peak, mfu=out["model_tflops_per_s"] / peak)
    return out


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run(args: argparse.Namespace) -> int:
    import torch

    from uer_ds.config import ModelConfig, TrainConfig
    from uer_ds.data import DATA_PROCESSORS, PretrainDataset, PreprocessOptions, preprocess
    from uer_ds.engine import build_engine, describe, dist, load_ds_config
    from uer_ds.engine.data import batch_iterator
    from uer_ds.engine.ds_config import precision
    from uer_ds.engine.plan import SETUPS, activation_bytes_per_sample, model_state_bytes, parameter_counts
    from uer_ds.models import Model
    from uer_ds.tokenizers import build_tokenizer

    prefix = args.dataset_path
    if prefix is None:
        # every process builds its own copy: cheap, and no coordination before the job starts
        prefix = f"{tempfile.mkdtemp(prefix='uer_ds_bench_')}/bench"
        preprocess(args.corpus_path, prefix, build_tokenizer("bert", vocab_path=args.vocab_path),
                   PreprocessOptions(data_processor=args.target, seq_length=args.seq_length, full_sentences=True),
                   progress=False)
    dataset = PretrainDataset(prefix, seed=7)
    targets = DATA_PROCESSORS[dataset.meta["data_processor"]]
    cfg = ModelConfig.from_json(args.config_path, {"vocab_size": dataset.meta["vocab_size"], "target": list(targets),
                                                   "data_processor": dataset.meta["data_processor"],
                                                   "kernels": args.kernels})
    train = TrainConfig(total_steps=args.warmup_steps + args.steps, batch_size=args.batch_size,
                        accumulation_steps=args.accumulation_steps, learning_rate=1e-4, report_steps=10**9,
                        save_checkpoint_steps=10**9)
    ds_config, source = load_ds_config(args.deepspeed_config)
    dist.init_distributed()  # its start-up memory is not the model's
    baseline = _rss_gb()
    engine = build_engine(ds_config, source, train, cfg, lambda: Model(cfg),
                          activation_checkpointing=args.activation_checkpointing)
    if args.compile:
        engine.compile()
        dataset.static_shapes = True  # every batch padded to seq_length: one compiled graph
    batches = batch_iterator(dataset, train, engine.data_parallel_rank, engine.data_parallel_size, 0, num_workers=1)
    on_gpu = torch.cuda.is_available()
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    real_tokens = 0
    for step in range(1, args.warmup_steps + args.steps + 1):
        micro = [next(batches) for _ in range(args.accumulation_steps)]
        if step == args.warmup_steps + 1:
            sync()
            start = time.perf_counter()
            real_tokens = 0
            if args.check_syncs and on_gpu:
                torch.cuda.set_sync_debug_mode("error")
        stats = engine.train_step(micro, step)
        real_tokens += stats.tokens
    if args.check_syncs and on_gpu:
        torch.cuda.set_sync_debug_mode(0)
    sync()
    elapsed = time.perf_counter() - start
    world = dist.world_size()
    samples = args.steps * args.batch_size * args.accumulation_steps * engine.data_parallel_size
    positions = samples * args.seq_length
    peak = torch.cuda.max_memory_allocated() / 2**30 if on_gpu else _rss_gb() - baseline
    params, largest = parameter_counts(cfg)
    setup = next(s for s in SETUPS if s.stage == int(engine.ds_config.get("zero_optimization", {}).get("stage", 0))
                 and s.offload_optimizer == ("offload_optimizer" in engine.ds_config.get("zero_optimization", {})))
    mixed = precision(engine.ds_config) != "fp32"
    states, _ = model_state_bytes(setup, params, largest, torch.cuda.device_count() or world, 1, mixed)
    estimate = (states + args.batch_size * activation_bytes_per_sample(cfg, args.seq_length, mixed, False,
                                                                       args.activation_checkpointing)) / 2**30
    result = {"device": torch.cuda.get_device_name() if on_gpu else f"CPU ({platform.processor() or 'x86_64'}, "
                                                                      f"{torch.get_num_threads()} threads)",
              "config": args.config_path, "parameters": params, "engine": describe(engine),
              "processes": world, "batch_size": args.batch_size, "seq_length": args.seq_length, "steps": args.steps,
              "accumulation_steps": args.accumulation_steps, "compile": args.compile,
              "step_time_s": elapsed / args.steps, "tokens_per_s": positions / elapsed,
              "nonpad_tokens_per_s": real_tokens * engine.data_parallel_size / elapsed,
              "samples_per_s": samples / elapsed,
              "peak_memory_gb": peak, "peak_memory_kind": "GPU allocated" if on_gpu else "process RSS growth",
              "estimated_memory_gb": estimate}
    result.update(_mfu(cfg, args, samples / elapsed, on_gpu))
    if dist.is_rank0():
        width = max(len(k) for k in result)
        for key, value in result.items():
            shown = (str(value).lower() if isinstance(value, bool) else f"{value:,.3f}" if isinstance(value, float)
                     else f"{value:,}" if isinstance(value, int) else value)
            print(f"{key:<{width}}  {shown}")
        if args.json_path:
            Path(args.json_path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0
