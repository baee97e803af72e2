"""The pre-training recipe's data and resume bookkeeping (uer_ds.recipes.pretrain): opening the dataset or
ERNIE 2.0's schedule, UER-py's masking flags, what identifies a dataset between the ranks of a job, the
checks against the model and tokenizer, the resume point, and where the data stands at each checkpoint."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Optional

from uer_ds.config import ModelConfig, TrainConfig

# A resumed run may change these; the new schedule applies from the resume step (Engine.reschedule), as an
# uninterrupted run with the new values would have it there, and the run says so (the rate before and after).
SCHEDULE_FLAGS = ("learning_rate", "warmup", "total_steps", "scheduler")
# These come back with the optimizer's saved state (DeepSpeed restores its parameter groups): a new value
# would be silently ignored, so it is refused.
OPTIMIZER_FLAGS = ("weight_decay", "adam_beta1", "adam_beta2", "adam_eps")


def open_data(options, engine, train_cfg: TrainConfig, subwords, masking) -> tuple[Any, TrainConfig, list[str]]:
    """(the dataset -- PretrainDataset, or ScheduleData with --schedule --, the TrainConfig -- a schedule's
    total steps --, note lines)."""
    from uer_ds.data import PretrainDataset

    if options.schedule:  # issue 27: ERNIE 2.0's continual multi-task schedule (uer_ds/engine/schedule.py)
        return open_schedule(options.schedule, engine.pipeline_stages, train_cfg, subwords)
    dataset = PretrainDataset(options.dataset_path, seed=train_cfg.seed, subwords=subwords)
    return dataset, train_cfg, apply_masking(dataset, options.dataset_path, masking.given())


def open_schedule(schedule: str, pipeline_stages: int, train_cfg: TrainConfig, subwords):
    """Issue 27: `--schedule`: its datasets and plan (ScheduleData), the TrainConfig with the schedule's
    total steps, and the lines that describe it.  The pipeline engine takes one target set: refused."""
    from uer_ds.data.schedule import describe
    from uer_ds.engine.schedule import open_schedule as open_schedule_data

    if pipeline_stages > 1:
        raise ValueError("--schedule with --pipeline_stages > 1: the pipeline engine trains one set of targets on "
                         "batches of one shape; train a schedule with ZeRO (--pipeline_stages 1)")
    data = open_schedule_data(schedule, train_cfg.seed, subwords)
    total = data.schedule.total_steps
    if train_cfg.total_steps not in (TrainConfig.total_steps, total):
        raise ValueError(f"--total_steps {train_cfg.total_steps}: the schedule {schedule} trains {total} steps "
                         "(the sum of its stages); leave --total_steps out")
    train_cfg = dataclasses.replace(train_cfg, total_steps=total)
    return data, train_cfg, describe(data.schedule) + [f"targets from the schedule: {', '.join(data.targets)}"]


def apply_masking(dataset, dataset_path: str, given: dict[str, Any]) -> list[str]:
    """UER-py's pretrain.py takes masking flags (`given`: those on the command line); uer_ds records them at
    preprocessing.  Flags equal to the dataset's are fine; a dynamic-masking dataset takes new span /
    whole-word settings at training time (as UER-py does); anything else is an error naming the preprocess
    flags to use."""
    from uer_ds.data.instances import BUILDERS

    options = dataset.meta["options"]
    differs = {k: v for k, v in given.items() if options.get(k) != v}
    if not differs:
        return []
    flags = " ".join(f"--{k}" if v is True else f"--{k} {v}" for k, v in differs.items())
    if "dynamic_masking" in differs or not options.get("dynamic_masking"):
        raise ValueError(f"{flags}: {dataset_path} was preprocessed with "
                         f"{ {k: options.get(k) for k in differs} } and masks at preprocessing (static masking); "
                         f"rerun `uer-ds preprocess ... --dynamic_masking {flags}`, or drop the flag(s)")
    dataset.meta["options"] = {**options, **given}
    dataset.builder = BUILDERS[dataset.meta["data_processor"]](dataset.data, dataset.meta, dataset.seed, True)
    return [f"masking at training time (dynamic masking): {flags}"]


def dataset_identity(prefix: str, meta: dict, instances: int) -> dict:
    """What tells one preprocessed dataset from another (compared between the ranks of a job): its run id
    (new at every preprocessing), what it was built for, its instance count and file sizes."""
    sizes = {suffix: os.path.getsize(f"{prefix}{suffix}") for suffix in (".bin", ".idx")
             if os.path.isfile(f"{prefix}{suffix}")}
    return {"run_id": meta.get("run_id"), "data_processor": meta.get("data_processor"),
            "seq_length": meta.get("seq_length"), "options": meta.get("options"), "instances": instances,
            "bytes": sizes}


def dataset_identity_of(plan) -> dict:
    """dataset_identity of --dataset_path, or with --schedule of each task's dataset (and the schedule file)."""
    dataset = plan.dataset
    datasets = getattr(dataset, "datasets", None)
    if datasets is None:
        return dataset_identity(plan.options.dataset_path, dataset.meta, len(dataset))
    return {"schedule": str(plan.options.schedule), **{
        f"task {name}": dataset_identity(task.dataset, datasets[name].meta, len(datasets[name]))
        for name, task in ((t.name, t) for t in dataset.schedule.tasks)}}


def check_against_dataset(cfg: ModelConfig, meta: dict, dataset_path: str, tokenizer) -> None:
    """The model's targets and length fit the dataset; the tokenizer given (if any) is the dataset's."""
    from uer_ds.data import DATA_PROCESSORS

    processor = meta["data_processor"]
    wanted = set(DATA_PROCESSORS[processor])
    if set(cfg.target) != wanted:
        raise ValueError(f"model target {list(cfg.target)} does not match the dataset {dataset_path}, built for "
                         f"'{processor}' (targets {sorted(wanted)}); set --target or preprocess for this target")
    if meta["seq_length"] > cfg.max_seq_length:
        raise ValueError(f"dataset {dataset_path} has seq_length {meta['seq_length']}, more than the model's "
                         f"max_seq_length {cfg.max_seq_length}")
    if tokenizer is not None:
        ours, theirs = tokenizer.identity(), meta["tokenizer"]
        if ours.get("vocab_sha256") != theirs.get("vocab_sha256") or ours.get("kind") != theirs.get("kind"):
            raise ValueError(f"the tokenizer given ({ours['kind']}, {tokenizer.vocab.source}) is not the one "
                             f"{dataset_path} was built with ({theirs})")


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """A checked --resume: the checkpoint tag, whether it loads through DeepSpeed's universal checkpoint
    (another number of processes), and {flag: (saved, given)} of the schedule flags that changed."""

    tag: str
    universal: bool
    changes: dict[str, tuple]


def resume_point(out: Path, cfg: ModelConfig, dataset, train_cfg: TrainConfig, dataset_path: Optional[str],
                 pipeline_stages: int) -> ResumePoint:
    """Check a --resume against the checkpoint before anything starts (the first second, not after
    DeepSpeed's start-up): the model config, the dataset, the seed and the optimizer's settings must be
    the saved ones, and --total_steps above the saved step; batch size, accumulation and the schedule may
    change (the data continues from the samples consumed; the new schedule from the resume step), and so
    may the number of processes (through DeepSpeed's universal checkpoint)."""
    from uer_ds.engine import checkpoint as ckpt

    saved_cfg, saved, tag_dir = ckpt.read_metadata(out)
    saved_data, saved_train = saved.get("dataset") or {}, saved.get("train") or {}
    step = int(saved.get("step", 0))
    pairs = ckpt.config_changes(saved_cfg, cfg)
    pairs[f"dataset (run_id of {saved.get('dataset_path')} then, {dataset_path} now)"] = \
        (saved_data.get("run_id"), dataset.meta.get("run_id"))
    for key in ("seed",) + OPTIMIZER_FLAGS:
        pairs[f"--{key}"] = (saved_train.get(key, getattr(train_cfg, key)), getattr(train_cfg, key))
    ckpt.check_unchanged(str(tag_dir), pairs, "Resume with the saved ones (batch size, accumulation, the schedule "
                         "--learning_rate/--warmup/--total_steps/--scheduler and the number of processes may "
                         "change), or train into a new --output_model_path")
    # the same run first (above), then the steps it would train
    if train_cfg.total_steps <= step:
        raise ValueError(f"--total_steps has value {train_cfg.total_steps}: the checkpoint {tag_dir} is already at "
                         f"step {step}, and a resumed run trains steps {step + 1}..--total_steps: give more than {step}")
    changes = {f"--{key}": (saved_train[key], getattr(train_cfg, key)) for key in SCHEDULE_FLAGS
               if key in saved_train and saved_train[key] != getattr(train_cfg, key)}
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return ResumePoint(tag_dir.name, ckpt.resharding(tag_dir, saved, world, pipeline_stages), changes)


def load_resume_point(engine, out: Path, point: ResumePoint, dataset):
    """Load the checkpoint (on another number of processes through its universal form, which rank 0
    writes once); returns (step, DataPosition) (a schedule: {task: DataPosition})."""
    from uer_ds.engine import checkpoint as ckpt, dist
    from uer_ds.engine.data import position_from_state
    from uer_ds.engine.schedule import ScheduleData

    tag = point.tag
    if point.universal:
        if dist.is_rank0():
            print(f"--resume: {out / tag} was saved by another number of processes: loading it through DeepSpeed's "
                  f"universal checkpoint ({out / (tag + ckpt.UNIVERSAL_SUFFIX)}, written once)", flush=True)
            ckpt.convert_to_universal(out, tag)
        dist.barrier()
        state = ckpt.load_universal(engine, out, tag + ckpt.UNIVERSAL_SUFFIX)
    else:
        state = engine.load(str(out), tag)
    if isinstance(dataset, ScheduleData):  # issue 27: a schedule, one position per task
        position = dataset.positions_from_state(state)
        if dist.is_rank0():
            print(f"resumed at step {state['step']}: {dataset.describe_positions(position)}", flush=True)
        return int(state["step"]), position
    position = position_from_state(state, len(dataset))
    if dist.is_rank0():
        print(f"resumed at step {state['step']}: epoch {position.epoch}, {position.in_epoch:,} of its samples "
              f"consumed ({position.consumed_samples:,} in all)", flush=True)
    return int(state["step"]), position


class DataCheckpoint:
    """save(step): the engine's checkpoint with where the data stands after `step` (the samples consumed
    from the start position, or with a schedule every task's position), so a resume continues the data."""

    def __init__(self, engine, out: Path, train_cfg: TrainConfig, dataset, position, start_step: int,
                 run_state: dict, schedule: bool) -> None:
        self.engine, self.out, self.train_cfg, self.dataset = engine, out, train_cfg, dataset
        self.position, self.start_step, self.run_state, self.schedule = position, start_step, run_state, schedule
        self.dp_size = engine.data_parallel_size

    def data_position(self, step: int) -> dict:
        from uer_ds.engine.data import advance

        cfg, dataset = self.train_cfg, self.dataset
        if self.schedule:  # issue 27: every task's position
            return dataset.position_state(dataset.positions_after(self.position, self.start_step, step, cfg,
                                                                  self.dp_size))
        return advance(self.position, (step - self.start_step) * cfg.accumulation_steps, cfg.batch_size,
                       self.dp_size, len(dataset)).to_dict()

    def __call__(self, step: int) -> None:
        now = self.data_position(step)
        self.engine.save(str(self.out), step, dict(self.run_state, step=step, data_position=dict(
            now, batch_size=self.train_cfg.batch_size, accumulation_steps=self.train_cfg.accumulation_steps,
            data_parallel_size=self.dp_size)))


__all__ = ["OPTIMIZER_FLAGS", "SCHEDULE_FLAGS", "DataCheckpoint", "ResumePoint", "apply_masking",
           "check_against_dataset", "dataset_identity", "dataset_identity_of", "load_resume_point", "open_data",
           "open_schedule", "resume_point"]
