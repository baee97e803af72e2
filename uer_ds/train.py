"""One training loop for pre-training and fine-tuning: build -> batch -> step -> report -> save.

The loop knows nothing of ZeRO stages, offload or pipelines: `uer_ds.engine` hands it an Engine with
`train_step`, `save` and `load`.  Reporting (JSON lines, TensorBoard, tqdm) happens on rank 0; the
statistics are summed over ranks first, at report steps only.
"""
from __future__ import annotations

import json
import math
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch

from uer_ds.config import TrainConfig
from uer_ds.engine import dist
from uer_ds.engine.engine import Engine, StepStats


def peak_memory_gb() -> float:
    """Peak GPU memory allocated by torch on CUDA; the process's peak resident memory on CPU."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


class Reporter:
    """Sums StepStats between report steps, reduces them over ranks, and writes them out on rank 0.

    The device tensors of the steps are added on the device; `report` is the one place they are read
    back (one transfer per report step), and where a NaN/inf loss stops training, naming its step.
    """

    def __init__(self, target_names: tuple[str, ...], metrics_path: Optional[str], tensorboard_dir: Optional[str],
                 total_steps: int, start_step: int, show_progress: bool = True) -> None:
        self.names = target_names
        self.rank0 = dist.is_rank0()
        self._reset()
        self.metrics = None
        self.writer = None
        self.progress = None
        self.last: dict = {}
        if not self.rank0:
            return
        if metrics_path:
            Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
            self.metrics = open(metrics_path, "a" if start_step else "w", encoding="utf-8")
        if tensorboard_dir:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(tensorboard_dir)
        if show_progress:
            from tqdm import tqdm

            self.progress = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def _reset(self) -> None:
        self.values: Optional[torch.Tensor] = None  # summed StepStats.values (device)
        self.bad_step: Optional[torch.Tensor] = None  # earliest non-finite step (device), +inf if none
        self.steps = self.tokens = self.samples = 0
        self.lr = 0.0
        self.window_start = time.perf_counter()

    def update(self, stats: StepStats) -> None:
        """Add one step (device additions only: nothing is read back)."""
        if stats.values is not None:
            self.values = stats.values if self.values is None else self.values + stats.values
            self.bad_step = stats.bad_step if self.bad_step is None else torch.minimum(self.bad_step, stats.bad_step)
        self.steps += 1
        self.tokens += stats.tokens
        self.samples += stats.samples
        self.lr = stats.lr
        if self.progress is not None:
            self.progress.update(1)

    def report(self, step: int, engine: Engine) -> dict:
        """Collective: every rank calls it at the same steps."""
        width = 1 + 3 * len(self.names)
        values = self.values.detach().cpu() if self.values is not None else torch.zeros(width, dtype=torch.float64)
        total = dist.all_reduce_sum(torch.cat([values, torch.tensor([self.tokens, self.samples], dtype=torch.float64)]))
        total = total.tolist()
        if not math.isfinite(total[0]):
            self._stop_on_nonfinite(step, total[0], engine.device)
        elapsed = max(time.perf_counter() - self.window_start, 1e-9)
        steps = max(self.steps, 1)
        record = {"step": step, "loss": total[0] / steps, "lr": self.lr,
                  "tokens_per_s": total[width] / elapsed, "samples_per_s": total[width + 1] / elapsed,
                  "tokens": int(total[width])}  # the window's non-padding tokens, all ranks
        for i, name in enumerate(self.names):
            loss_sum, correct, denominator = total[1 + 3 * i: 4 + 3 * i]
            if denominator == 0 and len(self.names) > 1:
                continue  # no prediction of this head in the window (a schedule's task not trained in it)
            if len(self.names) > 1 or name != "loss":
                record[f"{name}_loss"] = loss_sum / max(denominator, 1)
                record[f"{name}_acc"] = correct / max(denominator, 1)
        record.update(grad_norm=engine.grad_norm, loss_scale=engine.loss_scale,
                      skipped_steps=engine.skipped_steps, memory_gb=round(peak_memory_gb(), 3))
        self._reset()
        self.last = record
        if self.rank0:
            self._write(record)
        return record

    def check_finite(self, step: int, engine: Engine, before: str) -> None:
        """Collective, before a save or an evaluation (`before` says which): the steps since the last report
        trained on a finite loss, and the weights are finite.  One host read (of two numbers, reduced over
        the ranks), never inside a training step.  FloatingPointError naming the step otherwise, so that a
        diverged model is never saved, evaluated or kept as the best."""
        pending = self.bad_step if self.bad_step is not None else torch.tensor(math.inf)
        flags = torch.stack([-engine.nonfinite_parameters().to(engine.device, torch.float64),
                             pending.detach().to(engine.device, torch.float64)])
        dist.all_reduce_in_place(flags, op="min")  # the most non-finite tensors on a rank; the first bad step
        values = flags.tolist()  # the one host read
        most, first = -values[0], values[1]
        if math.isfinite(first):
            raise FloatingPointError(f"the loss is not finite (NaN or inf) at step {int(first)}, found before the "
                                     f"{before} of step {step}: training stopped, nothing of that step saved. Lower "
                                     "--learning_rate, raise --warmup, or use bf16 instead of fp16")
        if most:
            raise FloatingPointError(f"{int(most)} weight tensor(s) hold NaN or inf after step {step}: training "
                                     f"stopped before the {before}, nothing of that step saved. Lower --learning_rate, "
                                     "raise --warmup, or use bf16 instead of fp16")

    def _stop_on_nonfinite(self, step: int, loss: float, device: torch.device) -> None:
        bad = self.bad_step.detach().clone() if self.bad_step is not None else torch.tensor(math.inf)
        bad = bad.to(device, torch.float64)
        dist.all_reduce_in_place(bad, op="min")
        first = float(bad)
        at = f"step {int(first)}" if math.isfinite(first) else f"a step up to {step}"
        raise FloatingPointError(f"loss is {loss} at {at} (found at the report of step {step}): training stopped. "
                                 "Lower --learning_rate, raise --warmup, or use bf16 instead of fp16")

    def _write(self, record: dict) -> None:
        if self.metrics is not None:
            self.metrics.write(json.dumps(record) + "\n")
            self.metrics.flush()
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(self._tag(key), value, record["step"])
            self.writer.flush()
        if self.progress is not None:
            self.progress.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}",
                                      tok_s=f"{record['tokens_per_s']:.0f}")

    def _tag(self, key: str) -> str:
        """TensorBoard tag: per-target values grouped as loss/<target> and accuracy/<target>."""
        for name in self.names:
            if key == f"{name}_loss":
                return f"loss/{name}"
            if key == f"{name}_acc":
                return f"accuracy/{name}"
        return key

    def log(self, step: int, split: str, values: dict) -> None:
        """An evaluation's numbers (rank 0): one JSON line with "split", TensorBoard scalars as
        <split>/<name>; non-scalar values (per-class tables, confusion matrices) go to the JSON only."""
        if not self.rank0:
            return
        if self.metrics is not None:
            self.metrics.write(json.dumps({"step": step, "split": split, **values}) + "\n")
            self.metrics.flush()
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self.writer.add_scalar(f"{split}/{key}", value, step)
            self.writer.flush()

    def close(self) -> None:
        for handle in (self.metrics, self.writer, self.progress):
            if handle is not None:
                handle.close()


class EarlyStopping:
    """The best value of one metric so far, and whether `patience` evaluations in a row brought no
    improvement (patience 0: never stop early).  Every rank must feed it the same values."""

    def __init__(self, metric: str, patience: int = 0, mode: str = "max", min_delta: float = 0.0) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode has value '{mode}': must be max or min")
        if patience < 0:
            raise ValueError(f"--patience has value {patience}: must be >= 0 (0: no early stopping)")
        self.metric, self.patience, self.mode, self.min_delta = metric, patience, mode, min_delta
        self.best: Optional[float] = None
        self.best_step: Optional[int] = None
        self.bad_rounds = 0

    def update(self, value: float, step: int) -> bool:
        """Record one evaluation; True when it is the best so far (the model worth keeping)."""
        better = self.best is None or (value > self.best + self.min_delta if self.mode == "max"
                                       else value < self.best - self.min_delta)
        if better:
            self.best, self.best_step, self.bad_rounds = value, step, 0
        else:
            self.bad_rounds += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_rounds >= self.patience


@dataclass
class Evaluation:
    """Evaluation inside the loop (fine-tuning: after every epoch, every_steps = steps per epoch).

    run(step) -> metrics is collective (every rank calls it and gets the same numbers); the loop
    logs them as split `split`, feeds `stopping` with metrics[stopping.metric], calls
    on_best(step, metrics) when that is the best so far, and ends training when stopping says so.
    """

    every_steps: int
    run: Callable[[int], dict]
    stopping: EarlyStopping
    on_best: Callable[[int, dict], None]
    split: str = "dev"
    stopped_at: Optional[int] = None

    def __call__(self, step: int, reporter: "Reporter") -> bool:
        """Evaluate at `step`; True when training should stop."""
        metrics = self.run(step)
        reporter.log(step, self.split, metrics)
        if self.stopping.metric not in metrics:
            raise ValueError(f"evaluation gave no '{self.stopping.metric}' (it gave {', '.join(metrics)})")
        if self.stopping.update(float(metrics[self.stopping.metric]), step):
            self.on_best(step, metrics)
        if self.stopping.should_stop:
            self.stopped_at = step
            return True
        return False


def train(engine: Engine, batches: Iterator[dict], train_cfg: TrainConfig, start_step: int,
          reporter: Reporter, save: Callable[[int], None],
          on_step: Optional[Callable[[int], None]] = None, stop_after: Optional[int] = None,
          evaluation: Optional[Evaluation] = None) -> dict:
    """Steps start_step+1 .. total_steps (or .. stop_after, for job time limits: the schedule still
    follows total_steps); each step takes accumulation_steps micro-batches.  Reports every
    report_steps, saves every save_checkpoint_steps and at the last step run; with an Evaluation,
    evaluates every evaluation.every_steps and at the last step, and may stop early.  Before a save or
    an evaluation the loss and the weights are checked finite (Reporter.check_finite): a diverged model
    is never saved nor evaluated (so never the best)."""
    last = min(train_cfg.total_steps, stop_after or train_cfg.total_steps)
    record: dict = {}
    started, samples, step = time.perf_counter(), 0, start_step
    try:
        for step in range(start_step + 1, last + 1):
            micro = [next(batches) for _ in range(train_cfg.accumulation_steps)]
            stats = engine.train_step(micro, step)
            samples += stats.samples
            reporter.update(stats)
            if step % train_cfg.report_steps == 0 or step == last:
                record = reporter.report(step, engine)
            saving = step % train_cfg.save_checkpoint_steps == 0 or step == last
            evaluating = evaluation is not None and (step % evaluation.every_steps == 0 or step == last)
            if saving or evaluating:
                reporter.check_finite(step, engine, "save" if saving else "evaluation")
            if saving:
                save(step)
            if on_step is not None:
                on_step(step)
            if evaluating:
                if evaluation(step, reporter):  # stopped early: report and save this step too
                    if step % train_cfg.report_steps:
                        record = reporter.report(step, engine)
                    if step % train_cfg.save_checkpoint_steps:
                        save(step)
                    break
    finally:
        reporter.close()
    if dist.world_size() > 1:  # every rank says what it did: a picture of which hosts took part
        print(end_line(step - start_step, samples, time.perf_counter() - started, start_step), flush=True)
    return record


def end_line(steps: int, samples: int, seconds: float, start_step: int) -> str:
    """The line each rank of a multi-process job prints when its training loop ends."""
    first = f"steps {start_step + 1}..{start_step + steps}" if steps else "no steps"
    return (f"uer-ds: rank {dist.rank()} of {dist.world_size()} on {dist.host()} done: {first} ({steps} steps), "
            f"{samples} samples, {seconds:.1f} s")
