"""`uer-ds bench finetune`: fine-tuning steps per second of a classifier on a real TSV, as `uer-ds finetune
classifier` runs them (the task's reader and collate, batches padded to their longest row, the same
engine and step), without evaluation or saving.

Tokens/s counts real tokens only (the collate function's BatchInfo.tokens, padding excluded), beside
padded positions/s and the batches' padding share: on short texts most positions are padding (book_review
at seq 128: 69 % of seq_length), which the unpadded path (`--kernels triton`) never computes.  Prints a table
and writes JSON.  Random weights (speed does not depend on them).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    """`uer-ds bench finetune`: build the classifier's data, model and engine as fine-tuning does, time the
    steps (timed_steps), print the table and write JSON."""
    import torch

    from uer_ds.recipes.inputs import model_config_with_vocab, tokenizer_from_args
    from uer_ds.config import train_config_from_args
    from uer_ds.engine import build_engine, describe, dist
    from uer_ds.engine.ds_config import load_ds_config
    from uer_ds.tasks import TASKS, TaskModel
    from uer_ds.tasks.data import train_batches
    from uer_ds.tasks.model import body_config
    from uer_ds.recipes.predict import batch_maker

    task = TASKS["classifier"]
    tokenizer = tokenizer_from_args(args)
    if tokenizer is None:
        raise ValueError("give the vocabulary: --vocab_path (or --spm_model_path)")
    task_options = task.options_from(args)
    if args.synthetic_lengths:
        path = synthetic_tsv(tokenizer, args.synthetic_lengths, args.seq_length, args.synthetic_examples, args.seed)
        task_options = dataclasses.replace(task_options, train_path=path, dev_path=path)
    elif not task_options.train_path:
        raise ValueError("give --train_path (a classifier TSV), or --synthetic_lengths NAME")
    # the dev set is read by the task's loader, not used here
    task_options = dataclasses.replace(task_options, dev_path=task_options.dev_path or task_options.train_path)
    cfg = model_config_with_vocab(args, tokenizer)
    data = task.load(task_options, tokenizer, cfg, args.seq_length)
    collate = batch_maker(task, list(data.heads), tokenizer.pad_id if tokenizer.pad_id is not None else 0)
    counted = args.warmup_steps + args.steps
    train_cfg = train_config_from_args(args, total_steps=counted, save_checkpoint_steps=counted + 1)
    ds_config, source = load_ds_config(args.deepspeed_config or "zero0_bf16")
    dist.init_distributed()
    engine = build_engine(ds_config, source, train_cfg, body_config(cfg),
                          lambda: TaskModel(cfg, task.build_heads(cfg, data.heads, task_options)))
    if args.compile:
        engine.compile()
    batches = train_batches(data.train, collate, args.batch_size, args.accumulation_steps,
                            engine.data_parallel_rank, engine.data_parallel_size, args.seed)
    elapsed, tokens, positions, samples = timed_steps(engine, batches, args.warmup_steps, args.steps,
                                                      args.accumulation_steps)
    on_gpu = torch.cuda.is_available()
    world = engine.data_parallel_size
    result = {"device": torch.cuda.get_device_name() if on_gpu else "CPU", "config": args.config_path,
              "kernels": cfg.kernels, "engine": describe(engine),
              "data": (f"synthetic, {args.synthetic_lengths} lengths" if args.synthetic_lengths
                       else task_options.train_path),
              "seq_length": args.seq_length, "batch_size": args.batch_size, "steps": args.steps,
              "compile": args.compile, "step_time_s": elapsed / args.steps, "samples_per_s": samples * world / elapsed,
              "tokens_per_s": tokens * world / elapsed, "padded_positions_per_s": positions * world / elapsed,
              "padding": 1 - tokens / max(positions, 1),
              "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if on_gpu else None}
    if dist.is_rank0():
        width = max(len(k) for k in result)
        for key, value in result.items():
            shown = f"{value:,.3f}" if isinstance(value, float) else value
            print(f"{key:<{width}}  {shown}")
        if args.json_path:
            Path(args.json_path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


def timed_steps(engine, batches, warmup_steps: int, steps: int, accumulation_steps: int
                ) -> tuple[float, int, int, int]:
    """Train warmup_steps untimed, then `steps` timed (the device synchronised at both ends); returns
    (seconds, real tokens, padded positions, samples) of the timed steps on this rank."""
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    tokens = positions = samples = 0
    start = time.perf_counter()
    for step in range(1, warmup_steps + steps + 1):
        micro = [next(batches) for _ in range(accumulation_steps)]
        if step == warmup_steps + 1:
            sync()
            start = time.perf_counter()
            tokens = positions = samples = 0
        engine.train_step(micro, step)
        tokens += sum(b["info"].tokens for b in micro)
        positions += sum(b["src"].numel() for b in micro)
        samples += sum(b["info"].samples for b in micro)
    sync()
    return time.perf_counter() - start, tokens, positions, samples


def synthetic_tsv(tokenizer, distribution: str, seq_length: int, examples: int, seed: int) -> str:
    """A classifier TSV (in a temporary folder) whose rows tokenize to lengths drawn from `distribution`:
    each row is [CLS] + words + [SEP], the words whole-word vocabulary entries that the tokenizer keeps
    as one token each (checked).  ValueError when the vocabulary has no such words."""
    import tempfile

    import numpy as np

    from uer_ds.kernels import lengths

    rng = np.random.default_rng(seed)
    candidates = [w for w in tokenizer.vocab.id_to_token[:5000] if w.isalpha() and w.isascii() and len(w) > 1
                  and tokenizer.tokenize(w) == [w]]
    if not candidates:
        raise ValueError("--synthetic_lengths: the vocabulary has no whole ASCII words to make examples of")
    folder = Path(tempfile.mkdtemp(prefix="uer_ds_bench_finetune_"))
    rows = ["label\ttext_a"]
    for n in lengths.sample(distribution, seq_length, examples, rng):
        words = rng.choice(candidates, size=max(1, n - 2))
        rows.append(f"{rng.integers(0, 2)}\t{' '.join(words)}")
    path = folder / "train.tsv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(path)
