"""The batches of an ERNIE 2.0 continual multi-task schedule (`uer-ds pretrain --schedule`; the plan and the
file's rules are in uer_ds/data/schedule.py).

Each task has its own dataset and its own data stream (engine/data.py's batch_iterator: every rank reads
its shard, epoch after epoch), started the first time the plan reaches the task and continued whenever
the plan comes back to it; where each stream stands is a DataPosition per task, saved in checkpoints, so a
resumed run continues every task from its next unseen sample, in the middle of a stage as anywhere.

The step is the same on every step whatever the task (sync-free, and the same graph for ZeRO-3's
parameter trace): the collate function of each task adds "no labels" for every head of the other tasks
(a (B,) or (B, T) of IGNORE_INDEX, or one empty Picked row for the MLM), so every head runs and gives an
exact zero loss and gradient when its task is not the step's; it also adds tgt["task_type"], the (B,)
task id of the task embedding.  The choice of the task is the plan's, on the host; every rank follows the
same plan, so all ranks train the same task in a step.  Heads are idle between their tasks' steps, but
Adam's moments keep moving them there (zero gradients, as ZeRO's flat partitions would give anyway).
"""
from __future__ import annotations

import hashlib
from typing import Any, Iterator, Optional

import torch

from uer_ds.config import ModelConfig, TrainConfig
from uer_ds.data.batch import pick_positions
from uer_ds.data.registry import DATA_PROCESSORS
from uer_ds.data.schedule import Schedule, ScheduleError, check_targets, tasks_of_steps
from uer_ds.engine.data import DataPosition, advance, batch_iterator
from uer_ds.models.model import TASK_TYPE_KEY
from uer_ds.models.targets import IGNORE_INDEX, TARGETS


def no_labels(kind: str, rows: int, length: int, packing: Any = None) -> Any:
    """The labels of a head whose task is not the batch's: nothing to predict, in the head's label shape
    (`label_kind` of its target class): (rows,) or (rows, length) of IGNORE_INDEX, or one Picked row."""
    if kind == "sequence":
        return torch.full((rows,), IGNORE_INDEX, dtype=torch.long)
    if kind == "token":
        return torch.full((rows, length), IGNORE_INDEX, dtype=torch.long)
    if kind == "picked":
        return pick_positions(torch.full((rows, length), IGNORE_INDEX, dtype=torch.long), 1, packing)
    raise ValueError(f"label kind '{kind}' has no empty labels")


class TaskStream(torch.utils.data.Dataset):
    """One task's PretrainDataset, whose batches carry the task id and every other head's no_labels."""

    def __init__(self, dataset, task_id: int, others: dict[str, str]) -> None:
        self.dataset, self.task_id, self.others = dataset, task_id, others

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return self.dataset[index]

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def collate(self, instances: list[dict]) -> dict:
        batch = self.dataset.collate(instances)
        rows, length = batch["src"].shape
        info = batch["info"]
        for name, kind in self.others.items():
            batch["tgt"][name] = no_labels(kind, rows, length, info.packing)
        batch["tgt"][TASK_TYPE_KEY] = torch.full((rows,), self.task_id, dtype=torch.long)
        batch["info"] = info._replace(predictions={**info.predictions, **{name: 0 for name in self.others}})
        return batch


class ScheduleData:
    """The datasets, targets and plan of a schedule, and its batches for this rank.

    meta: what `uer-ds pretrain` reads of a dataset's OUT.json (vocab_size, seq_length (the longest),
    special_ids, tokenizer, run_id (of the schedule file and every dataset together)), and the model config
    values the schedule fixes (targets: every task's, in task order; head_config); plan: (total_steps,) task
    index per step."""

    def __init__(self, schedule: Schedule, seed: int, subwords=None) -> None:
        from uer_ds.data import PretrainDataset

        self.schedule = schedule
        self.datasets = {t.name: PretrainDataset(t.dataset, seed=seed, subwords=subwords) for t in schedule.tasks}
        self.processors = {name: ds.meta["data_processor"] for name, ds in self.datasets.items()}
        self.targets = check_targets(schedule, self.processors, DATA_PROCESSORS)
        self._check_tokenizers()
        self.plan = schedule.plan(seed)
        first = next(iter(self.datasets.values())).meta
        run = hashlib.sha256(schedule.digest.encode())
        for ds in self.datasets.values():
            run.update(str(ds.meta["run_id"]).encode())
        self.meta = {"vocab_size": first["vocab_size"], "special_ids": first["special_ids"],
                     "tokenizer": first["tokenizer"], "run_id": run.hexdigest()[:16], "data_processor": "schedule",
                     "seq_length": max(int(ds.meta["seq_length"]) for ds in self.datasets.values()),
                     "options": {}, "targets": self.targets, "head_config": self._head_config(),
                     "schedule": {"path": schedule.path, "sha256": schedule.digest,
                                                 "datasets": {n: ds.meta["run_id"] for n, ds in self.datasets.items()}}}
        self.streams: dict[str, TaskStream] = {}

    def _check_tokenizers(self) -> None:
        first_name, first = next(iter(self.datasets.items()))
        for name, ds in self.datasets.items():
            ours, theirs = first.meta["tokenizer"], ds.meta["tokenizer"]
            if (ours.get("kind"), ours.get("vocab_sha256")) != (theirs.get("kind"), theirs.get("vocab_sha256")):
                raise ScheduleError(f"{self.schedule.path}: task '{name}' ({ds.prefix}) was preprocessed with another "
                                    f"tokenizer than task '{first_name}' ({theirs} against {ours}): one model has one "
                                    "vocabulary")

    # ---- the model -------------------------------------------------------------------------------
    def _head_config(self) -> dict[str, Any]:
        """The head sizes the datasets fix (their OUT.json's head_config), which must agree."""
        heads: dict[str, Any] = {}
        for name, ds in self.datasets.items():
            for key, value in (ds.meta.get("head_config") or {}).items():
                if heads.setdefault(key, value) != value:
                    raise ScheduleError(f"{self.schedule.path}: the datasets disagree on {key} ({heads[key]} and "
                                        f"{value} in task '{name}'s {ds.prefix}.json)")
        return heads

    def check_model(self, cfg: ModelConfig) -> None:
        """The model (whose targets and head sizes came from meta's `targets` and `head_config`) against the
        schedule: the task ids fit its task embedding, every dataset's seq_length its max_seq_length, every
        head can take empty labels; then every task's stream knows the other heads."""
        if tuple(cfg.target) != self.targets:
            raise ScheduleError(f"the model's targets {list(cfg.target)} are not the schedule's {list(self.targets)}")
        if "task" in cfg.embedding:
            high = max(t.task_id for t in self.schedule.tasks)
            if high >= cfg.task_types_num:
                raise ScheduleError(f"{self.schedule.path}: task id {high} needs a task embedding of more than "
                                    f"{high} rows; the model's task_types_num is {cfg.task_types_num} (set "
                                    f"--task_types_num {high + 1} or more)")
        for name, ds in self.datasets.items():
            if int(ds.meta["seq_length"]) > cfg.max_seq_length:
                raise ScheduleError(f"task '{name}': dataset {ds.prefix} has seq_length {ds.meta['seq_length']}, "
                                    f"more than the model's max_seq_length {cfg.max_seq_length}")
        kinds = {name: getattr(TARGETS[name], "label_kind", None) for name in self.targets}
        refused = [name for name, kind in kinds.items() if kind is None]
        if refused:
            raise ScheduleError(f"{self.schedule.path}: target(s) {refused} cannot run in a schedule (it needs heads "
                                "that can take empty labels: mlm, sp, cls and ERNIE 2.0's)")
        for task in self.schedule.tasks:
            own = set(DATA_PROCESSORS[self.processors[task.name]])
            self.streams[task.name] = TaskStream(self.datasets[task.name], task.task_id,
                                                 {n: k for n, k in kinds.items() if n not in own})

    def check_tokenizer(self, tokenizer) -> None:
        """The tokenizer given on the command line must be the datasets' (None: nothing given)."""
        if tokenizer is None:
            return
        ours, theirs = tokenizer.identity(), self.meta["tokenizer"]
        if (ours.get("kind"), ours.get("vocab_sha256")) != (theirs.get("kind"), theirs.get("vocab_sha256")):
            raise ValueError(f"the tokenizer given ({ours['kind']}, {tokenizer.vocab.source}) is not the one the "
                             f"schedule's datasets were built with ({theirs})")

    @property
    def static_shapes(self) -> bool:
        return any(ds.static_shapes for ds in self.datasets.values())

    @static_shapes.setter
    def static_shapes(self, value: bool) -> None:
        for ds in self.datasets.values():
            ds.static_shapes = value

    # ---- batches and positions -------------------------------------------------------------------
    def start_positions(self) -> dict[str, DataPosition]:
        return {name: DataPosition() for name in self.schedule.names}

    def batches(self, train: TrainConfig, dp_rank: int, dp_size: int, start_step: int,
                positions: dict[str, DataPosition], num_workers: int = 1) -> Iterator[dict]:
        """The micro-batches of steps start_step + 1 .. total_steps for this rank: accumulation_steps of the
        step's task each; every task's stream starts at its position and only when the plan first needs it."""
        if not self.streams:
            raise RuntimeError("ScheduleData.check_model must run before batches (it tells each task the other heads)")
        names = self.schedule.names
        streams: dict[str, Iterator[dict]] = {}
        for step in range(start_step + 1, self.schedule.total_steps + 1):
            name = names[int(self.plan[step - 1])]
            if name not in streams:
                streams[name] = batch_iterator(self.streams[name], train, dp_rank, dp_size, positions[name], num_workers)
            for _ in range(train.accumulation_steps):
                yield next(streams[name])

    def positions_after(self, positions: dict[str, DataPosition], start_step: int, step: int, train: TrainConfig,
                        dp_size: int) -> dict[str, DataPosition]:
        """Every task's position after steps start_step + 1 .. step, from `positions` (those at start_step)."""
        counts = tasks_of_steps(self.plan, start_step + 1, step, len(self.schedule.names))
        return {name: advance(positions[name], int(counts[k]) * train.accumulation_steps, train.batch_size, dp_size,
                              len(self.datasets[name]))
                for k, name in enumerate(self.schedule.names)}

    def position_state(self, positions: dict[str, DataPosition]) -> dict:
        """What a checkpoint's data_position records for the schedule."""
        return {"schedule": {name: p.to_dict() for name, p in positions.items()}}

    def positions_from_state(self, state: dict) -> dict[str, DataPosition]:
        saved = (state.get("data_position") or {}).get("schedule")
        if not isinstance(saved, dict) or set(saved) != set(self.schedule.names):
            raise ValueError("the checkpoint records no position for every task of the schedule (it was not saved by "
                             "this schedule's run)")
        return {name: DataPosition(int(p["epoch"]), int(p["in_epoch"]), int(p["consumed_samples"]))
                for name, p in saved.items()}

    def describe_positions(self, positions: dict[str, DataPosition]) -> str:
        return "; ".join(f"{name}: epoch {p.epoch}, {p.in_epoch:,} samples" for name, p in positions.items())


def open_schedule(path: str, seed: int, subwords: Optional[Any] = None) -> ScheduleData:
    """read_schedule + ScheduleData: the schedule file's datasets opened and checked."""
    from uer_ds.data.schedule import read_schedule

    return ScheduleData(read_schedule(path), seed, subwords)


__all__ = ["ScheduleData", "TaskStream", "no_labels", "open_schedule"]
