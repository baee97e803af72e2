"""Resumable fine-tuning (the bookkeeping of uer_ds.recipes.finetune): `uer-ds finetune ... --resume` continues an interrupted run exactly.

A fine-tuning run keeps one DeepSpeed checkpoint in `<output_model_path>/checkpoint/` (Engine.save: the
optimizer, the schedule, each rank's random generators, and our state), written after the evaluation
of every epoch and every --save_checkpoint_steps steps, the older tag removed once the new `latest`
is in place.  Our state is what the loop needs to go on as if never stopped: the step, every epoch's
dev metrics, the best epoch and early stopping's counters, and the run's settings (a resume with other
settings is refused, naming the first difference).  The data order needs nothing saved: each epoch's
batches follow from (seed, epoch), so a resumed run skips the micro-batches already trained.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from uer_ds.train import Evaluation

CHECKPOINT_DIR = "checkpoint"


# what must not change between a run and its resumption, beside the task, heads, world size and total steps
SETTINGS_KEYS = ("epochs_num", "batch_size", "accumulation_steps", "learning_rate", "warmup", "scheduler", "seed",
                 "seq_length", "weight_decay", "max_grad_norm", "adam_beta1", "adam_beta2", "adam_eps", "metric",
                 "patience", "eval_steps", "train_path", "dataset_path_list")


def run_settings(task_name: str, heads: dict, values: dict[str, Any], world: int, total: int) -> dict:
    """What must not change between a run and its resumption: SETTINGS_KEYS of `values` (the run's
    options, those it has) with the task, heads, world size and total steps."""
    return {"task": task_name, "heads": heads, "world_size": world, "total_steps": total,
            **{k: values[k] for k in SETTINGS_KEYS if k in values}}


def check_arguments(save_checkpoint_steps: Optional[int], stop_after_steps: Optional[int], total: int) -> None:
    """--save_checkpoint_steps >= 0, --stop_after_steps within the run, and resumable."""
    if save_checkpoint_steps is not None and save_checkpoint_steps < 0:
        raise ValueError(f"--save_checkpoint_steps has value {save_checkpoint_steps}: must be >= 0 (0: none)")
    if stop_after_steps is not None and not 0 < stop_after_steps <= total:
        raise ValueError(f"--stop_after_steps has value {stop_after_steps}: must be in [1, {total}] (the run's "
                         "steps)")
    if stop_after_steps is not None and save_checkpoint_steps == 0:
        raise ValueError("--stop_after_steps with --save_checkpoint_steps 0: the run could not be resumed")


@dataclass
class BestModel:
    """The best dev evaluation so far: its step and metrics (saved with the checkpoint), and its per-head
    outputs (this process only: the bad cases need them; None after a resume whose best came before)."""

    step: Optional[int] = None
    metrics: Optional[dict] = None
    outputs: Optional[list] = None
    candidate: Optional[list] = None  # the outputs of the latest evaluation, kept if it proves the best

    def state(self) -> dict:
        return {} if self.step is None else {"step": self.step, "metrics": self.metrics}

    def keep(self, step: int, metrics: dict) -> None:
        self.step, self.metrics, self.outputs = step, metrics, self.candidate


def read_resume_point(out: Path, settings: dict, body_cfg) -> None:
    """Check the checkpoint a --resume continues: present, same model config, same settings."""
    from uer_ds.engine import checkpoint as ckpt

    directory = out / CHECKPOINT_DIR
    if not ckpt.is_checkpoint_dir(directory):
        raise FileNotFoundError(f"--resume: {directory} holds no checkpoint ('latest'); a run saves one after each "
                                "epoch (unless --save_checkpoint_steps 0): start without --resume")
    saved_cfg, meta, tag_dir = ckpt.read_metadata(directory)
    if saved_cfg != body_cfg:
        diff = [k for k, v in saved_cfg.to_dict().items() if getattr(body_cfg, k) != v]
        raise ValueError(f"--resume: the model config differs from the checkpoint's in {tag_dir}: "
                         + ", ".join(f"{k} {getattr(saved_cfg, k)!r} there, {getattr(body_cfg, k)!r} now"
                                     for k in diff))
    saved = meta.get("settings", {})
    for key, value in settings.items():
        if saved.get(key) != value:
            raise ValueError(f"--resume: {key} is {value!r} now but {saved.get(key)!r} in the run saved in "
                             f"{tag_dir}; resume with the same command")


def clear_old_checkpoint(out: Path) -> bool:
    """A new run (no --resume) into a directory with an earlier run's checkpoint starts afresh."""
    directory = out / CHECKPOINT_DIR
    if directory.is_dir():
        shutil.rmtree(directory)
        return True
    return False


class FinetuneProgress:
    """The loop's state worth saving, and the save itself (collective: every rank calls save)."""

    def __init__(self, engine, out: Path, settings: dict, per_epoch: int, every: Optional[int]) -> None:
        self.engine = engine
        self.directory = out / CHECKPOINT_DIR
        self.settings = settings
        self.per_epoch = per_epoch
        self.every = every  # None: after each epoch's evaluation only; 0: never
        self.history: list[dict] = []
        self.best = BestModel()
        self.evaluation: Optional[Evaluation] = None

    def state(self, step: int) -> dict:
        stopping = self.evaluation.stopping
        return {"step": step, "settings": self.settings, "history": self.history,
                "best": self.best.state(),
                "stopping": {"best": stopping.best, "best_step": stopping.best_step, "bad_rounds": stopping.bad_rounds}}

    def save(self, step: int) -> None:
        from uer_ds.engine import checkpoint as ckpt, dist

        if self.every == 0:
            return
        self.engine.save(str(self.directory), step, self.state(step))
        if dist.is_rank0():  # keep one checkpoint: the new one is complete and `latest` names it
            for old in self.directory.glob("global_step*"):
                if old.name != ckpt.tag_for(step) and old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
        dist.barrier()

    def save_between_epochs(self, step: int) -> None:
        """The loop's save callback: steps between evaluations (--save_checkpoint_steps, --stop_after_steps);
        an evaluated step (an epoch's last, or every --eval_steps, and the run's last) is saved after its
        evaluation (EpochEvaluation)."""
        evaluation = self.evaluation
        if step % evaluation.every_steps and step != evaluation.total:
            self.save(step)

    def restore(self) -> int:
        """Load the checkpoint into the engine and this object; returns its step."""
        saved = self.engine.load(str(self.directory))
        self.history[:] = saved["history"]
        self.best.step, self.best.metrics = saved["best"].get("step"), saved["best"].get("metrics")
        stopping = self.evaluation.stopping
        stopping.best, stopping.best_step, stopping.bad_rounds = (saved["stopping"][k] for k in
                                                                  ("best", "best_step", "bad_rounds"))
        return int(saved["step"])


class EpochEvaluation(Evaluation):
    """The dev evaluation at each epoch's end (or every --eval_steps steps) and at the run's last step, then
    the checkpoint (so it holds that evaluation's result).
    The loop also calls it at the step a run stops early (--stop_after_steps); inside an epoch that
    is not an evaluation of the uninterrupted run, so it is skipped, and the run's result stays exact."""

    progress: Optional[FinetuneProgress] = None
    total: int = 0

    def __call__(self, step: int, reporter) -> bool:
        if step % self.every_steps and step != self.total:
            return False
        stop = super().__call__(step, reporter)
        if self.progress is not None:
            self.progress.save(step)
        return stop


def epoch_evaluation(every: int, total: int, run: Callable[[int], dict], stopping, on_best,
                     progress: FinetuneProgress) -> EpochEvaluation:
    """The evaluation of a fine-tuning run: every `every` steps (the steps per epoch, or --eval_steps) and at
    step `total`, each followed by the checkpoint."""
    evaluation = EpochEvaluation(every, run, stopping, on_best)
    evaluation.progress, evaluation.total = progress, total
    progress.evaluation = evaluation
    return evaluation


__all__ = ["CHECKPOINT_DIR", "SETTINGS_KEYS", "BestModel", "EpochEvaluation", "FinetuneProgress", "check_arguments",
           "clear_old_checkpoint", "epoch_evaluation", "read_resume_point", "run_settings"]
