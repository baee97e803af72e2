"""Fine-tuning and inference for every task: the same steps whatever the head.

finetune(task, args):
  read data (errors before any model is built) -> TaskModel with fresh heads, the body loaded from
  --pretrained_model_path -> DeepSpeed engine -> uer_ds.train.train with an Evaluation after every
  epoch on the dev set (metrics, best model kept as a task model directory, early stopping) -> at
  the end, on rank 0, the best model reloaded: dev bad cases, test-set report, report.json.
infer(task, args): a task model directory -> batched predictions (plain PyTorch) -> TSV.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from uer_ds.atomic import atomic_path
from uer_ds.data.batch import batch_info
from uer_ds.tasks.base import Task, TaskData, predict_outputs
from uer_ds.tasks.data import Example, eval_batches, steps_per_epoch, train_batches
from uer_ds.tasks.model import TaskModel, body_config, load_task_model, select_pretrained, write_task_dir

REPORT_FILE = "report.json"


# ---- arguments -----------------------------------------------------------------------------------
UER_SEQ_LENGTH = 128  # UER-py's default --seq_length


def add_finetune_arguments(parser: argparse.ArgumentParser, task: Task) -> None:
    from uer_ds.cli.common import add_model_arguments, add_tokenizer_arguments, add_uer_engine_arguments
    from uer_ds.compat import add_accepted_flags
    from uer_ds.config import add_train_config_arguments

    task.add_arguments(parser)
    group = parser.add_argument_group("fine-tuning")
    group.add_argument("--pretrained_model_path",
                       help="pre-trained weights (a model directory, a uer_ds checkpoint directory or one of its "
                            "global_step<N> tags, a .safetensors/.bin file, a UER-py/TencentPretrain .bin -- "
                            "converted in memory --, or a fine-tuned task model); without it the model starts from "
                            "random weights")
    group.add_argument("--allow_partial_load", action="store_true",
                       help="load an embedding/encoder whose keys do not all match (reported) instead of failing")
    group.add_argument("--output_model_path", default=task.uer_output_model_path,
                       help="directory for the best model (config.json, task.json, model.safetensors) and "
                            f"report.json (default {task.uer_output_model_path}, UER-py's path; here a directory, "
                            "which `uer-ds infer --load_model_path` takes)")
    group.add_argument("--epochs_num", type=int, default=3, help="training epochs (default 3)")
    group.add_argument("--seq_length", type=int, default=128,
                       help="longest input in tokens; longer is cut (default 128)")
    group.add_argument("--eval_batch_size", type=int, help="batch size for evaluation (default: --batch_size)")
    group.add_argument("--metric", choices=task.metrics, default=task.metrics[0],
                       help=f"dev metric that picks the best model and drives early stopping "
                            f"(default {task.metrics[0]})")
    group.add_argument("--patience", type=int, default=0,
                       help="stop after this many epochs without a better dev --metric (default 0: never)")
    group.add_argument("--bad_case_path", help="write the best model's wrong dev predictions here (TSV)")
    group.add_argument("--metrics_path", help="JSON lines: training reports and each epoch's dev metrics")
    group.add_argument("--tensorboard_dir", help="TensorBoard logs (default: <output_model_path>/tensorboard)")
    group.add_argument("--no_progress", action="store_true", help="no progress bar")
    from uer_ds.tasks.resume import add_resume_arguments

    add_resume_arguments(group)
    engine = parser.add_argument_group("DeepSpeed engine")
    engine.add_argument("--deepspeed_config",
                        help="DeepSpeed JSON or a shipped name (ds_configs/): zero0..zero3, zero2_offload, "
                             "zero3_offload, *_bf16, *_fp16 (default: follows the job: zero0 for one process, the "
                             "planner's ZeRO stage for several)")
    engine.add_argument("--deepspeed", action="store_true", help="accepted for TencentPretrain compatibility")
    engine.add_argument("--activation_checkpointing", action="store_true",
                        help="recompute transformer layer activations in backward (less memory)")
    engine.add_argument("--compile", action="store_true",
                        help="torch.compile the model (DeepSpeed's engine.compile(), inductor)")
    add_uer_engine_arguments(engine)
    add_model_arguments(parser, model_flag="--pretrained_model_path")
    add_tokenizer_arguments(parser, subwords=True)
    add_train_config_arguments(parser, exclude=("total_steps", "save_checkpoint_steps"), learning_rate=2e-5,
                               batch_size=32, report_steps=100)
    add_accepted_flags(parser, ("--log_path", "--log_level", "--log_file_level", "--optimizer"))


def add_infer_arguments(parser: argparse.ArgumentParser, task: Task) -> None:
    from uer_ds.cli.common import add_model_arguments, add_tokenizer_arguments
    from uer_ds.compat import add_accepted_flags

    parser.add_argument("--load_model_path", required=True,
                        help="a task model directory written by `uer-ds finetune`, or a model fine-tuned by UER-py's "
                             "finetune/run_*.py (a .bin; give its --config_path and the task's settings, as UER-py's "
                             "inference scripts take them)")
    parser.add_argument("--test_path", required=True, help="input in the task's format: TSV with a header, or JSON "
                                                            "for cmrc and c3 (labels not needed)")
    parser.add_argument("--prediction_path", required=True, help="output: TSV, or JSON for cmrc and JSON lines for c3 "
                                                                  "(written under a temporary name, then renamed)")
    parser.add_argument("--batch_size", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--seq_length", type=int, help="longest input (default: the one the model was fine-tuned "
                                                       f"with; {UER_SEQ_LENGTH} for a UER-py .bin, as UER-py)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    task.add_infer_arguments(parser)
    add_accepted_flags(parser, ("--log_path", "--log_level", "--log_file_level"))
    add_tokenizer_arguments(parser, subwords=True)
    own = tuple(a.dest for a in parser._actions)  # noqa: SLF001 (the task's flags, e.g. --labels_num)
    add_model_arguments(parser, model_flag="--load_model_path", exclude=own)
    group = parser.add_argument_group("model shape (UER-py's inference scripts repeat it)")
    group.description = ("with a task model directory, given values must equal the saved model's (an error names "
                         "both otherwise); with a UER-py .bin they describe the model")


def batch_maker(task: Task, head_names: Sequence[str], pad_id: int,
                tokenizer=None) -> Callable[[list[Example], int], dict]:
    """collate(examples, head) -> the task's batch with its BatchInfo (what the host knows about it:
    tokens, padding, the head's prediction count), as the training loop wants it.  With subword
    features (the tokenizer's SubwordTable) the batch also gets each word's character ids and an
    in-vocabulary src, on the host."""
    table = getattr(tokenizer, "subwords", None)

    def collate(examples: list[Example], head: int) -> dict:
        batch = task.collate(examples, head, pad_id)
        if table is not None:
            batch = table.complete(batch)
        batch["info"] = batch_info(batch["seg"], {head_names[head]: task.predictions(batch)})
        return batch

    return collate


# ---- prediction ----------------------------------------------------------------------------------
def predict_examples(forward: Callable[[dict], Any], examples: Sequence[Example], head: int,
                     collate: Callable[[list[Example], int], dict], batch_size: int, rank: int = 0, world: int = 1,
                     desc: Optional[str] = None, on_batch: Optional[Callable[[int], None]] = None) -> list[Any]:
    """One output per example, in file order, on every rank.  Batches are sorted by length (less
    padding) and dealt to ranks; each rank runs the same number of forwards (ZeRO-3 needs it).  One process
    (world 1) never loads the engine: `evaluate` and `serve` predict without DeepSpeed."""
    batches = eval_batches(examples, batch_size, rank, world)
    progress = None
    if desc is not None and rank == 0:
        from tqdm import tqdm

        progress = tqdm(total=len(examples), desc=desc, unit="ex", leave=False, dynamic_ncols=True)
    mine: dict[int, Any] = {}
    for indices in batches:
        outputs = predict_outputs(forward(collate([examples[i] for i in indices], head)))
        for i, out in zip(indices, outputs):
            mine.setdefault(i, out)
        if progress is not None:
            progress.update(len(indices) * world)
        if on_batch is not None:
            on_batch(len(indices))
    if progress is not None:
        progress.close()
    merged: dict[int, Any] = {}
    if world > 1:
        from uer_ds.engine import dist

        parts = dist.all_gather_object(mine)
    else:
        parts = [mine]
    for part in parts:
        merged.update(part)
    return [merged[i] for i in range(len(examples))]


def module_forward(model: torch.nn.Module, device: torch.device) -> Callable[[dict], Any]:
    """forward(batch) -> the model's predictions (predict=True), without gradients, on `device`."""
    from uer_ds.data.batch import to_device

    @torch.no_grad()
    def forward(batch: dict) -> Any:
        batch = to_device(batch, device)
        return model(batch["src"], batch["tgt"], batch["seg"], predict=True)

    return forward


def evaluate_heads(task: Task, forward: Callable[[dict], Any], datasets: Sequence[Sequence[Example]],
                   heads: dict[str, dict], collate, args: argparse.Namespace, rank: int, world: int,
                   split: str, progress: bool) -> tuple[dict, list[list[Any]]]:
    """Metrics over every head's examples (the dev report during fine-tuning, the test report at its end,
    and `uer-ds evaluate`).  With one head: that head's metrics; with several: each head's scalars as
    <head>/<name>, the task's selection metrics averaged over heads, and the full per-head metrics under
    "heads".  A head whose dataset is None is skipped (its outputs entry is None): `datasets` follows the
    order of `heads`, which is the order of the model's heads."""
    batch_size = getattr(args, "eval_batch_size", None) or args.batch_size
    per_head, outputs = {}, []
    for index, (name, examples) in enumerate(zip(heads, datasets)):
        if examples is None:
            outputs.append(None)
            continue
        out = predict_examples(forward, examples, index, collate, batch_size, rank, world,
                               desc=f"{split} {name}" if progress else None)
        outputs.append(out)
        per_head[name] = task.evaluate(examples, out, heads[name], args)
    if len(heads) == 1:
        return next(iter(per_head.values())), outputs
    merged: dict[str, Any] = {}
    for metric in task.metrics:
        merged[metric] = float(sum(m[metric] for m in per_head.values()) / len(per_head))
    for name, metrics in per_head.items():
        merged.update({f"{name}/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
    merged["heads"] = per_head
    return merged, outputs


def format_metrics(task: Task, metrics: dict, title: str) -> str:
    if "heads" not in metrics:
        return task.format_report(metrics, title)
    return "\n".join(task.format_report(m, f"{title} [{name}]") for name, m in metrics["heads"].items())


def echo(text: str) -> None:
    """Print without breaking a progress bar."""
    from tqdm import tqdm

    tqdm.write(text)


# ---- fine-tuning ---------------------------------------------------------------------------------
def _check_arguments(args: argparse.Namespace, cfg) -> None:
    for key in ("epochs_num", "seq_length"):
        if getattr(args, key) <= 0:
            raise ValueError(f"--{key} has value {getattr(args, key)}: must be positive")
    if args.eval_batch_size is not None and args.eval_batch_size <= 0:
        raise ValueError(f"--eval_batch_size has value {args.eval_batch_size}: must be positive")
    if args.patience < 0:
        raise ValueError(f"--patience has value {args.patience}: must be >= 0 (0: no early stopping)")
    positional = "pos" in cfg.embedding or (cfg.stream_0 is not None and "pos" in cfg.stream_0.embedding)
    if positional and args.seq_length > cfg.max_seq_length:
        raise ValueError(f"--seq_length {args.seq_length} is longer than the model's max_seq_length "
                         f"({cfg.max_seq_length}), which its position embedding covers")


def task_info(task: Task, data: TaskData, args: argparse.Namespace, tokenizer) -> dict:
    """What task.json records: enough to rebuild the heads and the input pipeline at inference."""
    lower = None if args.do_lower_case is None else args.do_lower_case == "true"
    sub_vocab_path = getattr(args, "sub_vocab_path", None)
    return {"task": task.name, "heads": data.heads, "seq_length": args.seq_length,
            "tokenizer": {"kind": args.tokenizer, "do_lower_case": lower,
                          "vocab_path": os.path.abspath(args.vocab_path) if args.vocab_path else None,
                          "spm_model_path": os.path.abspath(args.spm_model_path) if args.spm_model_path else None,
                          "sub_vocab_path": os.path.abspath(sub_vocab_path) if sub_vocab_path else None,
                          **tokenizer.identity()}}


def finetune(task: Task, args: argparse.Namespace) -> int:
    """Fine-tune `task` as the module's docstring says; rank 0 holds the lock of --output_model_path (one
    writer per output: a second fine-tuning into it is refused at once, naming this one)."""
    from uer_ds.outputs import lock_output

    lock = None
    if os.environ.get("RANK", "0") == "0":
        command = " ".join(["uer-ds", *getattr(args, "command_argv", ["finetune", task.name])])
        lock = lock_output(args.output_model_path, "--output_model_path", command)
    try:
        return _finetune(task, args, lock.note("--output_model_path", args.output_model_path) if lock else None)
    finally:
        if lock is not None:
            lock.release()


def _finetune(task: Task, args: argparse.Namespace, lock_note: Optional[str]) -> int:
    from uer_ds.cli.common import (deepspeed_config_name, job_fingerprint, model_config_with_vocab,
                                   resolve_config_default, tokenizer_from_args)
    from uer_ds.compat import accepted_notes
    from uer_ds.config import train_config_from_args
    from uer_ds.engine import build_engine, describe, dist
    from uer_ds.engine.ds_config import default_ds_config_name, load_ds_config
    from uer_ds.tasks import resume
    from uer_ds.train import EarlyStopping, Reporter, train

    started = time.perf_counter()
    tokenizer = tokenizer_from_args(args)
    if tokenizer is None:
        raise ValueError("give the vocabulary: --vocab_path (or --spm_model_path)")
    source = _pretrained_source(args)
    base, config_note = resolve_config_default(args, source)
    notes = [line for line in (lock_note, config_note) if line] + accepted_notes(args)
    cfg = model_config_with_vocab(args, tokenizer, targets=False, base=base)
    _check_arguments(args, cfg)
    # read and check the pre-trained weights against the config now: a mismatch is named in the first
    # second, before the data is read and DeepSpeed starts (issue 30: it once surfaced after 16-39 s)
    pretrained = _read_pretrained(source, cfg, args) if source is not None and not args.resume else None
    if args.deepspeed_config is None:  # the default follows the job
        args.deepspeed_config, why = default_ds_config_name(cfg, int(os.environ.get("WORLD_SIZE", "1")),
                                                            args.seq_length)
        if args.deepspeed_config != "zero0":  # one process: no ZeRO, as the engine line says
            notes.append(f"--deepspeed_config not given: {args.deepspeed_config} ({why})")
    ds_name, fp16_notes = deepspeed_config_name(args)
    notes += fp16_notes
    data = task.load(args, tokenizer, cfg)
    info = task_info(task, data, args, tokenizer)
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0

    collate = batch_maker(task, list(data.heads), pad_id, tokenizer)

    def make_model() -> TaskModel:
        return TaskModel(cfg, task.build_heads(cfg, data.heads, args))

    ds_config, source = load_ds_config(ds_name)
    dist.init_distributed(args.dist_timeout, job_fingerprint(args, **{
        "model config": cfg.to_dict(), "data": {name: len(examples) for name, examples in
                                                zip(data.heads, data.train)}, "ds_config": ds_config}))
    rank0 = dist.is_rank0()
    world = dist.world_size()
    sizes = [len(t) for t in data.train]
    per_epoch = steps_per_epoch(sizes, args.batch_size, args.accumulation_steps, world)
    total = per_epoch * args.epochs_num
    resume.check_arguments(args, total)
    out = Path(args.output_model_path)
    settings = resume.run_settings(task.name, data.heads, args, world, total)
    if args.resume:
        resume.read_resume_point(out, settings, body_config(cfg))
    elif rank0 and resume.clear_old_checkpoint(out):
        notes.append(f"note: removed the earlier run's checkpoint in {out / resume.CHECKPOINT_DIR} (--resume "
                     "continues a run instead)")
    if rank0:
        for line in notes:
            print(line, flush=True)
    dist.barrier()
    pretrained = _pretrained_body(args, pretrained, make_model) if not args.resume else None

    every = args.save_checkpoint_steps
    train_cfg = train_config_from_args(args, total_steps=total, save_checkpoint_steps=every or total)
    engine = build_engine(ds_config, source, train_cfg, body_config(cfg), make_model, pretrained,
                          activation_checkpointing=args.activation_checkpointing)
    if args.compile:
        engine.compile()
    rank, world = engine.data_parallel_rank, engine.data_parallel_size
    heads = dict(data.heads)
    progress = resume.FinetuneProgress(engine, out, settings, per_epoch, every)
    history, best = progress.history, progress.best

    def run_dev(step: int) -> dict:
        t0 = time.perf_counter()
        metrics, outputs = evaluate_heads(task, engine.predict, data.dev, heads, collate, args, rank, world,
                                          "dev", progress=not args.no_progress)
        epoch = -(-step // per_epoch)
        history.append({"epoch": epoch, "step": step, "dev": metrics,
                        "eval_seconds": round(time.perf_counter() - t0, 2),
                        "elapsed_seconds": round(time.perf_counter() - started, 2)})
        best["outputs_candidate"] = outputs
        if rank0:
            echo(format_metrics(task, metrics, f"epoch {epoch} (step {step}) dev"))
        return metrics

    def keep_best(step: int, metrics: dict) -> None:
        state = engine.gathered_state_dict()
        if rank0:
            write_task_dir(out, engine.ds.module, state, dict(info, best={"step": step, "epoch": -(-step // per_epoch),
                                                                          args.metric: metrics[args.metric]}))
            echo(f"best dev {args.metric} so far: {metrics[args.metric]:.4f}; model saved to {out}")
        best.update(step=step, metrics=metrics, outputs=best["outputs_candidate"])
        dist.barrier()

    evaluation = resume.epoch_evaluation(per_epoch, total, run_dev, EarlyStopping(args.metric, args.patience),
                                         keep_best, progress)
    start = progress.restore() if args.resume else 0
    if rank0:
        print(f"uer-ds finetune {task.name}: {describe(engine)}; {sum(sizes)} training examples "
              f"({', '.join(f'{n}: {s}' for n, s in zip(heads, sizes))}); {args.epochs_num} epoch(s) x "
              f"{per_epoch} steps = {total} steps" + (f"; resumed after step {start}" if args.resume else ""),
              flush=True)
    batches = train_batches(data.train, collate, args.batch_size, args.accumulation_steps, rank, world, args.seed,
                            skip=start * args.accumulation_steps)
    reporter = Reporter(tuple(heads), args.metrics_path, args.tensorboard_dir or str(out / "tensorboard"), total, start,
                        show_progress=not args.no_progress)
    if evaluation.stopping.should_stop:  # the saved run had already stopped early
        evaluation.stopped_at = start
        reporter.close()
    else:
        train(engine, batches, train_cfg, start, reporter, progress.save_between_epochs, evaluation=evaluation,
              stop_after=args.stop_after_steps)
    train_seconds = time.perf_counter() - started
    stopped_at = args.stop_after_steps
    if stopped_at is not None and stopped_at < total and evaluation.stopped_at is None:
        if rank0:
            print(f"stopped after step {stopped_at} of {total}; checkpoint in {out / resume.CHECKPOINT_DIR}; continue "
                  "with the same command and --resume", flush=True)
        dist.barrier()
        return 0
    if rank0:
        _finish(task, args, data, heads, collate, out, history, best, evaluation, total, per_epoch, train_seconds,
                started)
    dist.barrier()
    return 0


def _pretrained_source(args: argparse.Namespace):
    """--pretrained_model_path as the resolver recognises it (any model kind), or None."""
    if not args.pretrained_model_path:
        return None
    from uer_ds.convert.resolve import resolve_model

    return resolve_model(args.pretrained_model_path, "--pretrained_model_path", config_path=args.config_path)


def _read_pretrained(source, cfg, args: argparse.Namespace) -> tuple[dict, list[str]]:
    """(weights under uer_ds's names, report lines) of --pretrained_model_path, its embedding and encoder
    checked against the model config (key by key, shape by shape; --allow_partial_load relaxes it)."""
    from uer_ds.convert.resolve import format_hint
    from uer_ds.models.model import Model

    state, notes = source.pretrained_state(cfg)
    with torch.device("meta"):
        body = Model(body_config(cfg))
    try:
        select_pretrained(state, body, args.pretrained_model_path, args.allow_partial_load)
    except ValueError as err:
        raise ValueError(f"{err}{format_hint(state, args.pretrained_model_path)}") from None
    return state, notes


def _pretrained_body(args: argparse.Namespace, pretrained: Optional[tuple[dict, list[str]]], make_model
                     ) -> Optional[dict]:
    """The part of the pre-trained weights (_read_pretrained's) the task model takes, report lines printed
    on rank 0."""
    from uer_ds.engine import dist

    if pretrained is None:
        if dist.is_rank0():
            print("no --pretrained_model_path: every weight starts from random initialisation", flush=True)
        return None
    state, notes = pretrained
    with torch.device("meta"):
        shape_model = make_model()
    selected, more = select_pretrained(state, shape_model, args.pretrained_model_path, args.allow_partial_load)
    if dist.is_rank0():
        for line in notes + more:
            print(f"pretrained: {line}", flush=True)
    return selected


def _finish(task: Task, args, data: TaskData, heads: dict, collate, out: Path, history: list, best: dict,
            evaluation, total: int, per_epoch: int, train_seconds: float, started: float) -> None:
    """Rank 0, after training: bad cases of the best model on dev, test report, report.json."""
    from uer_ds.engine import dist

    if evaluation.stopped_at is not None:
        echo(f"early stopping after epoch {-(-evaluation.stopped_at // per_epoch)}: no better dev {args.metric} for "
             f"{args.patience} epoch(s)")
    loaded: list = []

    def best_model_forward():
        """The best model, reloaded from the output directory (once)."""
        if not loaded:
            model, _ = load_task_model(out, lambda c, i: task.build_heads(c, i["heads"]), device=dist.device())
            loaded.append(module_forward(model, dist.device()))
        return loaded[0]

    if args.bad_case_path:
        outputs = best.get("outputs")
        if outputs is None:  # a resumed run whose best epoch came before the interruption
            size = args.eval_batch_size or args.batch_size
            outputs = [predict_examples(best_model_forward(), dev, index, collate, size)
                       for index, dev in enumerate(data.dev)]
        rows_written = _write_bad_cases(task, args.bad_case_path, data, heads, outputs)
        echo(f"wrote {rows_written} bad case(s) of the best model on dev to {args.bad_case_path}")
    best_epoch = -(-best["step"] // per_epoch)
    report = {"task": task.name, "epochs": history,
              "best": {"step": best["step"], "epoch": best_epoch, "metric": args.metric, "dev": best["metrics"]},
              "stopped_early": evaluation.stopped_at is not None, "total_steps": total, "steps_per_epoch": per_epoch,
              "train_seconds": round(train_seconds, 2)}
    if any(t is not None for t in data.test):
        # the dev report's code (evaluate_heads), over the heads that have a test set
        metrics, _ = evaluate_heads(task, best_model_forward(), data.test, heads, collate, args, 0, 1, "test",
                                    progress=not args.no_progress)
        report["test"] = metrics
        echo(format_metrics(task, metrics, "test (best model)"))
    report["seconds"] = round(time.perf_counter() - started, 2)
    with atomic_path(out / REPORT_FILE) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    echo(f"best dev {args.metric} {report['best']['dev'][args.metric]:.4f} at epoch {report['best']['epoch']}; "
         f"model in {out}; report in {out / REPORT_FILE}; {report['seconds']:.1f} s")


def _write_bad_cases(task: Task, path: str, data: TaskData, heads: dict, outputs: list) -> int:
    count, header_written = 0, False
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for index, name in enumerate(heads):
            header, rows = task.bad_cases(data.dev[index], outputs[index], heads[name])
            if not header_written:
                f.write("\t".join((["head"] if len(heads) > 1 else []) + header) + "\n")
                header_written = True
            for row in rows:
                f.write("\t".join(([name] if len(heads) > 1 else []) + row) + "\n")
                count += 1
    return count


# ---- inference -----------------------------------------------------------------------------------
def _infer_tokenizer(args: argparse.Namespace, info: dict):
    from uer_ds.tokenizers import build_tokenizer

    recorded = info["tokenizer"]
    vocab_path = args.vocab_path or recorded.get("vocab_path")
    spm_path = args.spm_model_path or recorded.get("spm_model_path")
    if vocab_path is None and spm_path is None:
        raise ValueError("give the vocabulary the model was fine-tuned with: --vocab_path (or --spm_model_path)")
    lower = recorded.get("do_lower_case") if args.do_lower_case is None else args.do_lower_case == "true"
    kind = recorded.get("kind", args.tokenizer) if args.tokenizer == "bert" else args.tokenizer
    tokenizer = build_tokenizer(kind, vocab_path, spm_path, do_lower_case=lower)
    sub_vocab_path = getattr(args, "sub_vocab_path", None) or recorded.get("sub_vocab_path")
    if recorded.get("sub_vocab_sha256") and sub_vocab_path is None:
        raise ValueError("the model encodes words from their characters: give its --sub_vocab_path")
    if recorded.get("sub_vocab_sha256"):
        from uer_ds.cli.common import attach_subwords

        attach_subwords(tokenizer, sub_vocab_path)
        if tokenizer.subwords.identity()["sub_vocab_sha256"] != recorded["sub_vocab_sha256"]:
            raise ValueError(f"the sub-vocabulary given ({sub_vocab_path}) is not the one the model was fine-tuned "
                             f"with (sha256 {recorded['sub_vocab_sha256'][:12]}...)")
    if tokenizer.identity().get("vocab_sha256") != recorded.get("vocab_sha256"):
        raise ValueError(f"the vocabulary given ({vocab_path or spm_path}) is not the one the model was fine-tuned "
                         f"with (sha256 {recorded.get('vocab_sha256', '?')[:12]}..., "
                         f"{recorded.get('vocab_size')} entries)")
    return tokenizer


def _infer_model(task: Task, args: argparse.Namespace, device: torch.device):
    """(forward(batch) -> the head's outputs, task info, tokenizer) of --load_model_path, recognised by the
    resolver (uer_ds.convert.resolve): a task directory (the model-shape flags given must agree with it;
    --kernels picks the implementation), a model UER-py's finetune/run_*.py wrote (.bin: its config and
    head settings from the flags, as UER-py's inference scripts take them), or an ONNX model from `uer-ds
    export onnx` (predicted through onnxruntime)."""
    from uer_ds.cli.common import check_model_flags
    from uer_ds.config import ModelConfig
    from uer_ds.convert.resolve import INFER_KINDS, MODEL_KINDS, resolve_model

    uer_2020_output(task, args)
    source = resolve_model(args.load_model_path, "--load_model_path", kinds=MODEL_KINDS + ("onnx",),
                           config_path=args.config_path)
    if source.kind not in INFER_KINDS and not (source.kind == "weights" and task.uer_head):
        raise ValueError(f"--load_model_path '{args.load_model_path}' is {source.description}, not a fine-tuned "
                         f"model: fine-tune it first (uer-ds finetune {task.name} --pretrained_model_path "
                         f"{args.load_model_path} ...), then infer with the directory that writes")
    if source.kind in ("uer", "weights"):
        return _uer_inference(task, args, source, device)
    info = read_info_checked(source.task_info(), args.load_model_path, task)
    tokenizer = _infer_tokenizer(args, info)
    spec = info["heads"][_head_name(args, info)]
    head_values = {k: spec[k] for k in ("pooling", "labels_num") if k in spec}
    saved = source.own_config() if source.kind == "task" else ModelConfig.from_dict(info["config"], "the ONNX model")
    cfg = check_model_flags(args, saved, args.load_model_path, head_values)
    task.check_infer_flags(args, spec, args.load_model_path)
    if source.kind == "onnx":
        if cfg.kernels != saved.kernels:
            raise ValueError(f"--kernels {cfg.kernels}: {args.load_model_path} runs in onnxruntime, which has its own "
                             "kernels; leave --kernels out")
        forward, _ = source.onnx_forward()
        return forward, info, tokenizer
    model, _ = source.task_model(lambda c, i: task.build_heads(c, i["heads"]), kernels=cfg.kernels, device=device)
    return module_forward(model, device), info, tokenizer


def uer_2020_output(task: Task, args: argparse.Namespace) -> None:
    """UER-py's 2019-2020 run_*.py wrote the fine-tuned model to a name per task (models/classifier_model.bin,
    ner_model.bin, cmrc_model.bin, ...), and that era's inference commands read it; `uer-ds finetune`, as
    UER-py's finetune/run_*.py today, writes models/finetuned_model.bin.  When --load_model_path is the
    task's old name, absent, and the directory beside it holds finetuned_model.bin, that model is read
    (said so; read_info_checked still checks it is this task's model)."""
    old = task.uer_2020_output_path
    given = Path(args.load_model_path)
    if old is None or given.exists() or given.as_posix().removeprefix("./") != old.removeprefix("./"):
        return
    written = given.parent / Path(task.uer_output_model_path).name
    if not written.is_dir():
        return
    print(f"note: --load_model_path {args.load_model_path} does not exist: UER-py's run_*.py of 2019-2020 wrote the "
          f"fine-tuned {task.name} model there; uer_ds's finetune (as UER-py's today) writes "
          f"{task.uer_output_model_path}: reading {written}", flush=True)
    args.load_model_path = str(written)


def _uer_inference(task: Task, args: argparse.Namespace, source, device: torch.device):
    """(forward, task info, tokenizer) of a model fine-tuned by UER-py's finetune/run_*.py: a .bin state dict
    with UER-py's names, the model config from --config_path (default: beside the file, else bert/base)
    and the flags, the head's settings from the task's flags (--labels_num, --label2id_path, ...), as
    UER-py's inference scripts take them.  Converted in memory; computed with UER-py's LayerNorm, so
    the outputs are UER-py's."""
    from uer_ds.cli.common import model_config_with_vocab, resolve_config_default, tokenizer_from_args

    path = args.load_model_path
    tokenizer = tokenizer_from_args(args)
    if tokenizer is None:
        raise ValueError("give the vocabulary the model was fine-tuned with: --vocab_path (or --spm_model_path)")
    kind = getattr(task, "uer_head", None)
    if kind is None:
        raise ValueError(f"{path}: a file, not a task model directory; UER-py checkpoints load for "
                         f"{', '.join(_uer_tasks())}, not '{task.name}' (convert its body with `uer-ds convert` and "
                         "fine-tune here)")
    if source.kind != "uer":
        raise ValueError(f"{path}: a weight file without UER-py's key names; give a task model directory written by "
                         "`uer-ds finetune`, or a model fine-tuned by UER-py's finetune/run_*.py")
    base, _ = resolve_config_default(args, source)
    cfg = model_config_with_vocab(args, tokenizer, targets=False, base=base)
    model, spec = source.uer_task_model(cfg, kind, task.name, lambda head: task.uer_spec(args, cfg, head),
                                        lambda c, specs: task.build_heads(c, specs), device)
    info = {"task": task.name, "heads": {task.name: spec}, "seq_length": args.seq_length or UER_SEQ_LENGTH}
    return module_forward(model, device), info, tokenizer


def _uer_tasks() -> list[str]:
    from uer_ds.tasks import TASKS

    return [name for name, t in TASKS.items() if getattr(t, "uer_head", None)]


def _head_name(args: argparse.Namespace, info: dict) -> str:
    names = list(info["heads"])
    head_name = getattr(args, "head", None) or names[0]
    if head_name not in info["heads"]:
        raise ValueError(f"--head '{head_name}': the model's heads are {names}")
    return head_name


def infer(task: Task, args: argparse.Namespace) -> int:
    from uer_ds.engine import dist

    if args.batch_size <= 0:
        raise ValueError(f"--batch_size has value {args.batch_size}: must be positive")
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    forward, info, tokenizer = _infer_model(task, args, device)
    names = list(info["heads"])
    head_name = _head_name(args, info)
    spec = info["heads"][head_name]
    labels_num = getattr(args, "labels_num", None)
    if labels_num is not None and labels_num != spec.get("labels_num"):
        raise ValueError(f"--labels_num {labels_num} disagrees with the model in {args.load_model_path} "
                         f"({spec.get('labels_num')} labels)")
    labels_num_list = getattr(args, "labels_num_list", None)
    saved_list = [s.get("labels_num") for s in info["heads"].values()]
    if labels_num_list is not None and labels_num_list != saved_list:
        raise ValueError(f"--labels_num_list {' '.join(map(str, labels_num_list))} disagrees with the model in "
                         f"{args.load_model_path} (heads {', '.join(info['heads'])} with {saved_list} labels)")
    seq_length = args.seq_length or info["seq_length"]
    examples = task.read(args.test_path, tokenizer, seq_length, spec, labelled=False, args=args)
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    started = time.perf_counter()
    outputs = predict_examples(forward, examples, names.index(head_name),
                               batch_maker(task, names, pad_id, tokenizer), args.batch_size,
                               desc=None if args.no_progress else "predict")
    with atomic_path(args.prediction_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        task.write_prediction_file(f, examples, outputs, spec, args)
    seconds = time.perf_counter() - started
    if dist.is_rank0():
        print(f"predicted {len(examples)} example(s) in {seconds:.1f} s ({len(examples) / max(seconds, 1e-9):.0f}/s) "
              f"with head '{head_name}' -> {Path(args.prediction_path)}", flush=True)
    return 0


def read_info_checked(info: dict, source: str, task: Task) -> dict:
    """A fine-tuned model's task.json, checked to serve `task` (its own, or one it reads models of)."""
    compatible = {task.name} | set(getattr(task, "reads_models_of", ()))
    if info.get("task") not in compatible:
        raise ValueError(f"{source} holds a '{info.get('task')}' model, not one for '{task.name}'")
    return info


__all__ = ["add_finetune_arguments", "add_infer_arguments", "evaluate_heads", "finetune", "infer",
           "module_forward", "predict_examples"]
