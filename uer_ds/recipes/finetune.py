"""Fine-tuning as named steps, the same for every task whatever its head: plan -> build -> run -> export.

- plan: the flags read into typed options; the tokenizer, the model config, the pre-trained weights checked
  against it, the ds_config (uer_ds.engine.ds_config.choose_ds_config) and the task's data -- every error a
  bad input can cause comes before any model is built;
- build: the ranks meet, the resume point is checked, the TaskModel (fresh heads, the body loaded from
  --pretrained_model_path) goes into a DeepSpeed engine;
- run: uer_ds.train.train with a DevEvaluation after every epoch (metrics, the best model kept as a task
  model directory, early stopping) and resumable checkpoints (uer_ds.recipes.finetune_resume);
- export: on rank 0 the best model reloaded: dev bad cases, the test-set report, report.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from uer_ds.atomic import atomic_path
from uer_ds.config import EngineConfig, ModelConfig, OutputConfig
from uer_ds.config.options import option, options_from_args
from uer_ds.recipes.predict import batch_maker, echo, evaluate_heads, format_metrics, mean_loss
from uer_ds.tasks.base import Task, TaskData, TaskOptions
from uer_ds.tasks.model import TaskModel, body_config, select_pretrained

REPORT_FILE = "report.json"


@dataclass(frozen=True)
class FinetuneOptions:
    """What fine-tuning starts from and how long it trains, beside TrainConfig's optimisation settings."""

    pretrained_model_path: Optional[str] = option(
        "pre-trained weights (a model directory, a uer_ds checkpoint directory or one of its global_step<N> tags, a "
        ".safetensors/.bin file, a UER-py/TencentPretrain .bin -- converted in memory --, or a fine-tuned task "
        "model); without it the model starts from random weights", default=None)
    allow_partial_load: bool = option(
        "load an embedding/encoder whose keys do not all match (reported) instead of failing", default=False)
    epochs_num: int = option("training epochs (default 3)", default=3)
    seq_length: int = option("longest input in tokens; longer is cut (default 128)", default=128)
    eval_batch_size: Optional[int] = option("batch size for evaluation (default: --batch_size)", default=None)
    metric: str = option("dev metric that picks the best model and drives early stopping", default="accuracy")
    patience: int = option("stop after this many evaluations (epochs, or --eval_steps intervals) without a better "
                           "dev --metric (default 0: never)", default=0)
    eval_steps: Optional[int] = option(
        "evaluate on dev (the task's metrics and the dev loss) every N steps and at the last step, instead of "
        "after each epoch; the best model, early stopping and the checkpoint follow these evaluations", default=None)
    bad_case_path: Optional[str] = option("write the best model's wrong dev predictions here (TSV)", default=None)
    save_checkpoint_steps: Optional[int] = option(
        "also save a resumable checkpoint every N steps (default: after each epoch's evaluation; 0: none). One "
        "checkpoint is kept", default=None)

    def check(self, cfg: ModelConfig) -> None:
        """ValueError naming the flag: counts that must be positive, a --seq_length past the position embedding."""
        for key in ("epochs_num", "seq_length"):
            if getattr(self, key) <= 0:
                raise ValueError(f"--{key} has value {getattr(self, key)}: must be positive")
        if self.eval_batch_size is not None and self.eval_batch_size <= 0:
            raise ValueError(f"--eval_batch_size has value {self.eval_batch_size}: must be positive")
        if self.eval_steps is not None and self.eval_steps <= 0:
            raise ValueError(f"--eval_steps has value {self.eval_steps}: must be positive (leave it out to evaluate "
                             "after each epoch)")
        if self.patience < 0:
            raise ValueError(f"--patience has value {self.patience}: must be >= 0 (0: no early stopping)")
        positional = "pos" in cfg.embedding or (cfg.stream_0 is not None and "pos" in cfg.stream_0.embedding)
        if positional and self.seq_length > cfg.max_seq_length:
            raise ValueError(f"--seq_length {self.seq_length} is longer than the model's max_seq_length "
                             f"({cfg.max_seq_length}), which its position embedding covers")


# fine-tuning's help texts of the OutputConfig fields
FINETUNE_OUTPUT_HELP = {
    "resume": "continue the run in --output_model_path from its last checkpoint (checkpoint/): the same losses, "
              "dev metrics, best model and early stopping as an uninterrupted run",
    "stop_after_steps": "end this run after step N with a checkpoint (job time limits; continue with --resume)",
    "metrics_path": "JSON lines: training reports and each epoch's dev metrics",
    "tensorboard_dir": "TensorBoard logs (default: <output_model_path>/tensorboard)",
}


@dataclass
class FinetunePlan:
    """What plan() read and checked; build/run/export take it.  `args` stays for the job's fingerprint
    (every flag, compared between ranks) and the optimisation flags (TrainConfig's, read once the total
    steps are known)."""

    task: Task
    args: argparse.Namespace
    options: FinetuneOptions
    task_options: TaskOptions
    engine: EngineConfig
    output: OutputConfig
    cfg: ModelConfig
    tokenizer: Any
    data: TaskData
    info: dict
    ds_name: str
    pretrained: Optional[tuple[dict, list[str]]]
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @property
    def out(self) -> Path:
        return Path(self.output.output_model_path)

    @property
    def eval_batch_size(self) -> int:
        return self.options.eval_batch_size or self.args.batch_size

    def collate(self):
        pad_id = self.tokenizer.pad_id if self.tokenizer.pad_id is not None else 0
        return batch_maker(self.task, list(self.data.heads), pad_id, self.tokenizer)

    def make_model(self) -> TaskModel:
        return TaskModel(self.cfg, self.task.build_heads(self.cfg, self.data.heads, self.task_options))


def main(task: Task, args: argparse.Namespace) -> int:
    """Fine-tune `task`; rank 0 holds the lock of --output_model_path (one writer per output: a second
    fine-tuning into it is refused at once, naming this one)."""
    from uer_ds.outputs import lock_output

    lock = None
    output = options_from_args(OutputConfig, args)
    if os.environ.get("RANK", "0") == "0":
        command = " ".join(["uer-ds", *(args.command_argv or ["finetune", task.name])])
        lock = lock_output(output.output_model_path, "--output_model_path", command)
    try:
        plan = plan_run(task, args, lock.note("--output_model_path", output.output_model_path) if lock else None)
        built = build(plan)
        return run(plan, built)
    finally:
        if lock is not None:
            lock.release()


# ---- plan ----------------------------------------------------------------------------------------
def plan_run(task: Task, args: argparse.Namespace, lock_note: Optional[str] = None) -> FinetunePlan:
    """Read the flags and everything a bad input can stop, before DeepSpeed starts."""
    from uer_ds.compat import accepted_notes
    from uer_ds.engine.ds_config import choose_ds_config
    from uer_ds.recipes.inputs import model_config_with_vocab, resolve_config_default, tokenizer_from_args

    started = time.perf_counter()
    options, engine = options_from_args(FinetuneOptions, args), options_from_args(EngineConfig, args)
    output = options_from_args(OutputConfig, args)
    tokenizer = tokenizer_from_args(args)
    if tokenizer is None:
        raise ValueError("give the vocabulary: --vocab_path (or --spm_model_path)")
    source = pretrained_source(options, args.config_path)
    base, config_note, config_path = resolve_config_default(args.config_path, source)
    notes = [line for line in (lock_note, config_note) if line] + accepted_notes(args)
    cfg = model_config_with_vocab(args, tokenizer, targets=False, base=base, config_path=config_path)
    options.check(cfg)
    # read and check the pre-trained weights against the config now: a mismatch is named in the first
    # second, before the data is read and DeepSpeed starts (issue 30: it once surfaced after 16-39 s)
    pretrained = read_pretrained(source, cfg, options) if source is not None and not output.resume else None
    ds_name, ds_notes = choose_ds_config(engine, cfg, int(os.environ.get("WORLD_SIZE", "1")), options.seq_length)
    task_options = task.options_from(args)
    data = task.load(task_options, tokenizer, cfg, options.seq_length)
    info = task_info(task, data, options.seq_length, args, tokenizer)
    return FinetunePlan(task, args, options, task_options, engine, output, cfg, tokenizer, data, info, ds_name,
                        pretrained, notes + ds_notes, started)


def pretrained_source(options: FinetuneOptions, config_path: Optional[str]):
    """--pretrained_model_path as the resolver recognises it (any model kind), or None."""
    if not options.pretrained_model_path:
        return None
    from uer_ds.convert.resolve import resolve_model

    return resolve_model(options.pretrained_model_path, "--pretrained_model_path", config_path=config_path)


def read_pretrained(source, cfg: ModelConfig, options: FinetuneOptions) -> tuple[dict, list[str]]:
    """(weights under uer_ds's names, report lines) of --pretrained_model_path, its embedding and encoder
    checked against the model config (key by key, shape by shape; --allow_partial_load relaxes it)."""
    from uer_ds.convert.resolve import format_hint
    from uer_ds.models.model import Model

    state, notes = source.pretrained_state(cfg)
    with torch.device("meta"):
        body = Model(body_config(cfg))
    try:
        select_pretrained(state, body, options.pretrained_model_path, options.allow_partial_load)
    except ValueError as err:
        raise ValueError(f"{err}{format_hint(state, options.pretrained_model_path)}") from None
    return state, notes


def task_info(task: Task, data: TaskData, seq_length: int, args: argparse.Namespace, tokenizer) -> dict:
    """What task.json records: enough to rebuild the heads and the input pipeline at inference."""
    lower = None if args.do_lower_case is None else args.do_lower_case == "true"
    sub_vocab_path = args.sub_vocab_path
    return {"task": task.name, "heads": data.heads, "seq_length": seq_length,
            "tokenizer": {"kind": args.tokenizer, "do_lower_case": lower,
                          "vocab_path": os.path.abspath(args.vocab_path) if args.vocab_path else None,
                          "spm_model_path": os.path.abspath(args.spm_model_path) if args.spm_model_path else None,
                          "sub_vocab_path": os.path.abspath(sub_vocab_path) if sub_vocab_path else None,
                          **tokenizer.identity()}}


# ---- build ---------------------------------------------------------------------------------------
@dataclass
class Built:
    """What build() made: the engine, the schedule (steps per epoch, total), the resumable progress."""

    engine: Any
    train_cfg: Any
    per_epoch: int
    total: int
    sizes: list[int]
    progress: Any  # uer_ds.recipes.finetune_resume.FinetuneProgress


def build(plan: FinetunePlan) -> Built:
    """The ranks meet (checking they run one job); the schedule and the resume point; the engine."""
    from uer_ds.config import train_config_from_args
    from uer_ds.engine import build_engine, dist
    from uer_ds.engine.ds_config import load_ds_config
    from uer_ds.recipes import finetune_resume as resume
    from uer_ds.recipes.inputs import job_fingerprint

    args, data, out = plan.args, plan.data, plan.out
    ds_config, source = load_ds_config(plan.ds_name)
    dist.init_distributed(plan.engine.dist_timeout, job_fingerprint(args, **{
        "model config": plan.cfg.to_dict(), "data": {name: len(examples) for name, examples in
                                                     zip(data.heads, data.train)}, "ds_config": ds_config}))
    rank0, world = dist.is_rank0(), dist.world_size()
    sizes = [len(t) for t in data.train]
    from uer_ds.tasks.data import steps_per_epoch

    per_epoch = steps_per_epoch(sizes, args.batch_size, args.accumulation_steps, world)
    total = per_epoch * plan.options.epochs_num
    every = plan.options.save_checkpoint_steps
    resume.check_arguments(every, plan.output.stop_after_steps, total)
    train_cfg = train_config_from_args(args, total_steps=total, save_checkpoint_steps=every or total)
    flags = {**vars(train_cfg), **dataclasses.asdict(plan.options),
             **{k: getattr(plan.task_options, k) for k in plan.task.options.FINETUNE}}  # the task's flags only
    settings = resume.run_settings(plan.task.name, data.heads, flags, world, total)
    if plan.output.resume:
        resume.read_resume_point(out, settings, body_config(plan.cfg))
    elif rank0 and resume.clear_old_checkpoint(out):
        plan.notes.append(f"note: removed the earlier run's checkpoint in {out / resume.CHECKPOINT_DIR} (--resume "
                          "continues a run instead)")
    for line in plan.notes if rank0 else []:
        print(line, flush=True)
    dist.barrier()
    pretrained = pretrained_body(plan) if not plan.output.resume else None
    engine = build_engine(ds_config, source, train_cfg, body_config(plan.cfg), plan.make_model, pretrained,
                          activation_checkpointing=plan.engine.activation_checkpointing)
    if plan.engine.compile:
        engine.compile()
    progress = resume.FinetuneProgress(engine, out, settings, per_epoch, every)
    return Built(engine, train_cfg, per_epoch, total, sizes, progress)


def pretrained_body(plan: FinetunePlan) -> Optional[dict]:
    """The part of the pre-trained weights (read_pretrained's) the task model takes, report lines printed
    on rank 0."""
    from uer_ds.engine import dist

    if plan.pretrained is None:
        if dist.is_rank0():
            print("no --pretrained_model_path: every weight starts from random initialisation", flush=True)
        return None
    state, notes = plan.pretrained
    with torch.device("meta"):
        shape_model = plan.make_model()
    selected, more = select_pretrained(state, shape_model, plan.options.pretrained_model_path,
                                       plan.options.allow_partial_load)
    if dist.is_rank0():
        for line in notes + more:
            print(f"pretrained: {line}", flush=True)
    return selected


# ---- run -----------------------------------------------------------------------------------------
class DevEvaluation:
    """The dev evaluation of each epoch (`__call__`: metrics, history, the outputs kept as the best's
    candidate) and the best model kept as a task model directory (`keep_best`, rank 0 writes)."""

    def __init__(self, plan: FinetunePlan, built: Built, collate) -> None:
        self.plan, self.built, self.collate = plan, built, collate
        self.history, self.best = built.progress.history, built.progress.best

    def __call__(self, step: int) -> dict:
        from uer_ds.engine import dist

        plan, engine = self.plan, self.built.engine
        t0 = time.perf_counter()
        metrics, outputs = evaluate_heads(plan.task, engine.predict, plan.data.dev, dict(plan.data.heads),
                                          self.collate, plan.task_options, plan.eval_batch_size,
                                          engine.data_parallel_rank,
                                          engine.data_parallel_size, "dev", progress=not plan.output.no_progress)
        shown = metrics
        metrics = dict(metrics, loss=mean_loss(engine.evaluate, plan.data.dev, self.collate, plan.eval_batch_size,
                                               engine.data_parallel_rank, engine.data_parallel_size))
        epoch = -(-step // self.built.per_epoch)
        self.history.append({"epoch": epoch, "step": step, "dev": metrics,
                             "eval_seconds": round(time.perf_counter() - t0, 2),
                             "elapsed_seconds": round(time.perf_counter() - plan.started, 2)})
        self.best.candidate = outputs
        if dist.is_rank0():
            echo(format_metrics(plan.task, shown, f"epoch {epoch} (step {step}) dev"))
        return metrics

    def keep_best(self, step: int, metrics: dict) -> None:
        from uer_ds.engine import dist
        from uer_ds.tasks.model import write_task_dir

        metric, engine = self.plan.options.metric, self.built.engine
        state = engine.gathered_state_dict()
        if dist.is_rank0():
            best = {"step": step, "epoch": -(-step // self.built.per_epoch), metric: metrics[metric]}
            write_task_dir(self.plan.out, engine.ds.module, state, dict(self.plan.info, best=best))
            echo(f"best dev {metric} so far: {metrics[metric]:.4f}; model saved to {self.plan.out}")
        self.best.keep(step, metrics)
        dist.barrier()


def run(plan: FinetunePlan, built: Built) -> int:
    """Train with an evaluation after each epoch; then export (or stop after --stop_after_steps)."""
    from uer_ds.engine import dist
    from uer_ds.recipes import finetune_resume as resume
    from uer_ds.train import EarlyStopping

    collate = plan.collate()
    dev = DevEvaluation(plan, built, collate)
    stopping = EarlyStopping(plan.options.metric, plan.options.patience,
                             mode="min" if plan.options.metric == "loss" else "max")  # dev loss: lower is better
    evaluation = resume.epoch_evaluation(plan.options.eval_steps or built.per_epoch, built.total, dev, stopping,
                                         dev.keep_best, built.progress)
    start = built.progress.restore() if plan.output.resume else 0
    train_loop(plan, built, evaluation, collate, start)
    train_seconds = time.perf_counter() - plan.started
    stopped_at = plan.output.stop_after_steps
    if stopped_at is not None and stopped_at < built.total and evaluation.stopped_at is None:
        if dist.is_rank0():
            print(f"stopped after step {stopped_at} of {built.total}; checkpoint in {plan.out / resume.CHECKPOINT_DIR}; "
                  "continue with the same command and --resume", flush=True)
        dist.barrier()
        return 0
    if dist.is_rank0():
        export(plan, built, evaluation, collate, train_seconds)
    dist.barrier()
    return 0


def train_loop(plan: FinetunePlan, built: Built, evaluation, collate, start: int) -> None:
    """uer_ds.train.train from `start` (a saved run that had already stopped early trains no more)."""
    from uer_ds.engine import describe, dist
    from uer_ds.tasks.data import train_batches
    from uer_ds.train import Reporter, train

    args, engine, heads = plan.args, built.engine, list(plan.data.heads)
    if dist.is_rank0():
        print(f"uer-ds finetune {plan.task.name}: {describe(engine)}; {sum(built.sizes)} training examples "
              f"({', '.join(f'{n}: {s}' for n, s in zip(heads, built.sizes))}); {plan.options.epochs_num} epoch(s) x "
              f"{built.per_epoch} steps = {built.total} steps" + (f"; resumed after step {start}" if plan.output.resume
                                                                  else ""), flush=True)
    batches = train_batches(plan.data.train, collate, args.batch_size, args.accumulation_steps,
                            engine.data_parallel_rank, engine.data_parallel_size, args.seed,
                            skip=start * args.accumulation_steps)
    reporter = Reporter(tuple(heads), plan.output.metrics_path, plan.output.tensorboard(), built.total, start,
                        show_progress=not plan.output.no_progress)
    if evaluation.stopping.should_stop:  # the saved run had already stopped early
        evaluation.stopped_at = start
        reporter.close()
        return
    train(engine, batches, built.train_cfg, start, reporter, built.progress.save_between_epochs,
          evaluation=evaluation, stop_after=plan.output.stop_after_steps)


# ---- export --------------------------------------------------------------------------------------
def export(plan: FinetunePlan, built: Built, evaluation, collate, train_seconds: float) -> None:
    """Rank 0, after training: bad cases of the best model on dev, test report, report.json."""
    from uer_ds.recipes.predict import write_bad_cases

    metric, best, per_epoch = plan.options.metric, built.progress.best, built.per_epoch
    if evaluation.stopped_at is not None:
        rounds = "epoch(s)" if plan.options.eval_steps is None else f"evaluation(s) of every {plan.options.eval_steps} steps"
        echo(f"early stopping after epoch {-(-evaluation.stopped_at // per_epoch)} (step {evaluation.stopped_at}): "
             f"no better dev {metric} for {plan.options.patience} {rounds}")
    best_model = BestModelForward(plan)
    heads = dict(plan.data.heads)
    if plan.options.bad_case_path:
        rows = write_bad_cases(plan.task, plan.options.bad_case_path, plan.data, heads,
                               best.outputs if best.outputs is not None else best_model.dev_outputs(collate))
        echo(f"wrote {rows} bad case(s) of the best model on dev to {plan.options.bad_case_path}")
    report = {"task": plan.task.name, "epochs": built.progress.history,
              "best": {"step": best.step, "epoch": -(-best.step // per_epoch), "metric": metric, "dev": best.metrics},
              "stopped_early": evaluation.stopped_at is not None, "total_steps": built.total,
              "steps_per_epoch": per_epoch, "train_seconds": round(train_seconds, 2)}
    if any(t is not None for t in plan.data.test):
        # the dev report's code (evaluate_heads), over the heads that have a test set
        metrics, _ = evaluate_heads(plan.task, best_model.forward(), plan.data.test, heads, collate,
                                    plan.task_options, plan.eval_batch_size, 0, 1, "test",
                                    progress=not plan.output.no_progress)
        report["test"] = metrics
        echo(format_metrics(plan.task, metrics, "test (best model)"))
    report["seconds"] = round(time.perf_counter() - plan.started, 2)
    out = plan.out
    with atomic_path(out / REPORT_FILE) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    echo(f"best dev {metric} {report['best']['dev'][metric]:.4f} at epoch {report['best']['epoch']}; "
         f"model in {out}; report in {out / REPORT_FILE}; {report['seconds']:.1f} s")


class BestModelForward:
    """The best model, reloaded from the output directory once, on this process's device."""

    def __init__(self, plan: FinetunePlan) -> None:
        self.plan, self._forward = plan, None

    def forward(self):
        if self._forward is None:
            from uer_ds.engine import dist
            from uer_ds.recipes.predict import module_forward
            from uer_ds.tasks.model import load_task_model

            task = self.plan.task
            model, _ = load_task_model(self.plan.out, lambda c, i: task.build_heads(c, i["heads"]),
                                       device=dist.device())
            self._forward = module_forward(model, dist.device())
        return self._forward

    def dev_outputs(self, collate) -> list:
        """Every head's dev outputs (a resumed run whose best epoch came before the interruption)."""
        from uer_ds.recipes.predict import predict_examples

        return [predict_examples(self.forward(), dev, index, collate, self.plan.eval_batch_size)
                for index, dev in enumerate(self.plan.data.dev)]


__all__ = ["REPORT_FILE", "Built", "DevEvaluation", "FinetuneOptions", "FinetunePlan", "build", "export", "main",
           "plan_run", "run", "task_info"]
