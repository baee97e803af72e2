"""ERNIE 2.0's continual multi-task schedule (Sun et al., 2020, arXiv 1907.12412, "Continual Multi-task
Learning"): `uer-ds pretrain --schedule schedule.json`.  This module reads and checks the JSON and makes
the plan (which task each optimizer step trains); uer_ds/engine/schedule.py feeds the batches.

    {
      "tasks": {                                   name -> a preprocessed dataset (and a task id)
        "masking":  {"dataset": "mlm", "task_id": 0},
        "reorder":  {"dataset": "sentence_reorder"},
        "distance": {"dataset": "sentence_distance"}
      },
      "stages": [                                  trained one after the other
        {"steps": 600, "tasks": {"masking": 2, "reorder": 1, "distance": 1}},
        {"tasks": {"masking": {"steps": 300}, "reorder": {"steps": 100}, "distance": {"steps": 100}}}
      ]
    }

- A task is a dataset written by `uer-ds preprocess` (a path relative to the schedule file's folder, or
  absolute); its targets are its data processor's (knowledge masking is an `mlm` dataset preprocessed with
  --masking).  Each target belongs to one task: the heads' statistics are the tasks'.
- task_id feeds the task embedding ('task' in the model's embedding; default: the task's place in
  "tasks", 0, 1, ...); ids must be below the model's task_types_num.
- A stage gives each of its tasks a share of its steps (a number, its weight: "steps" then sets the
  stage's length) or a step count ({"steps": k}; the stage's "steps", if given, must be their sum).  Shares
  become counts by the largest remainder, so a stage trains each task exactly that many steps.
- A stage keeps every task of the stages before it (the paper's continual schedule: new tasks are added
  while the earlier ones keep training); dropping one is an error.
- Each optimizer step trains one task, on every rank and every micro-batch of the step: the plan lists
  the steps' tasks, each stage's counts in an order shuffled by (seed, stage), so the plan depends only on
  the schedule and the seed (a resumed run finds the same task at every step).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uer_ds.textfile import load_json

PLAN_STREAM = 27  # the plan's own random stream (instances use 1-3)


@dataclass(frozen=True)
class ScheduleTask:
    name: str
    dataset: str       # the dataset prefix, resolved
    task_id: int


@dataclass(frozen=True)
class Stage:
    counts: dict[str, int]  # task name -> steps of this stage

    @property
    def steps(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Schedule:
    """A checked schedule file: its tasks (in file order) and stages."""

    path: str
    tasks: tuple[ScheduleTask, ...]
    stages: tuple[Stage, ...]
    digest: str  # sha256 of the file's JSON (canonical), recorded in checkpoints

    @property
    def total_steps(self) -> int:
        return sum(stage.steps for stage in self.stages)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(task.name for task in self.tasks)

    def task(self, name: str) -> ScheduleTask:
        return next(t for t in self.tasks if t.name == name)

    def plan(self, seed: int) -> np.ndarray:
        """(total_steps,) int64: the index (in `tasks`) of the task each step 1..total_steps trains
        (element s - 1 is step s).  Each stage's exact counts, in an order shuffled by (seed, stage)."""
        index = {name: i for i, name in enumerate(self.names)}
        parts = []
        for k, stage in enumerate(self.stages):
            steps = np.concatenate([np.full(count, index[name], np.int64) for name, count in stage.counts.items()])
            parts.append(np.random.default_rng([seed, PLAN_STREAM, k]).permutation(steps))
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def stage_of(self, step: int) -> int:
        """The stage (0-based) that step `step` (1-based) belongs to."""
        end = 0
        for k, stage in enumerate(self.stages):
            end += stage.steps
            if step <= end:
                return k
        raise ValueError(f"step {step} is past the schedule's {self.total_steps} steps")


class ScheduleError(ValueError):
    """A schedule file breaks a rule: the message names the file, the entry, the value and the rule."""


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def largest_remainder(weights: dict[str, float], steps: int) -> dict[str, int]:
    """Integer counts summing to `steps` in proportion to `weights` (Hamilton's method: floors, then one
    more step to the largest remainders, ties to the earlier task)."""
    total = sum(weights.values())
    exact = {name: steps * w / total for name, w in weights.items()}
    counts = {name: int(np.floor(x)) for name, x in exact.items()}
    order = sorted(weights, key=lambda name: -(exact[name] - counts[name]))
    for name in order[: steps - sum(counts.values())]:
        counts[name] += 1
    return counts


def _read_tasks(raw: Any, where: str, base: Path) -> tuple[ScheduleTask, ...]:
    if not isinstance(raw, dict) or not raw:
        raise ScheduleError(f"{where}: 'tasks' must be a non-empty object of name -> {{\"dataset\": ...}}")
    tasks, ids = [], {}
    for position, (name, entry) in enumerate(raw.items()):
        if not isinstance(entry, dict) or not isinstance(entry.get("dataset"), str) or not entry["dataset"]:
            raise ScheduleError(f"{where}: task '{name}' has {entry!r}: it needs {{\"dataset\": \"<preprocessed "
                                "dataset prefix>\"}}")
        unknown = set(entry) - {"dataset", "task_id"}
        if unknown:
            raise ScheduleError(f"{where}: task '{name}' has unknown key(s) {sorted(unknown)} (known: dataset, task_id)")
        task_id = entry.get("task_id", position)
        if not _int(task_id) or task_id < 0:
            raise ScheduleError(f"{where}: task '{name}' has task_id {task_id!r}: must be an integer >= 0")
        if task_id in ids:
            raise ScheduleError(f"{where}: tasks '{ids[task_id]}' and '{name}' both have task_id {task_id}")
        ids[task_id] = name
        dataset = entry["dataset"]
        resolved = dataset if os.path.isabs(dataset) else str(base / dataset)
        tasks.append(ScheduleTask(name, resolved, task_id))
    return tuple(tasks)


def _read_stage(k: int, raw: Any, where: str, names: tuple[str, ...]) -> Stage:
    at = f"{where}: stages[{k}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("tasks"), dict) or not raw["tasks"]:
        raise ScheduleError(f"{at} must be an object with a non-empty 'tasks' object (name -> share or "
                            "{\"steps\": N})")
    unknown = set(raw) - {"tasks", "steps"}
    if unknown:
        raise ScheduleError(f"{at} has unknown key(s) {sorted(unknown)} (known: tasks, steps)")
    steps = raw.get("steps")
    if steps is not None and (not _int(steps) or steps < 1):
        raise ScheduleError(f"{at}: 'steps' has value {steps!r}: must be a positive integer")
    entries = raw["tasks"]
    for name in entries:
        if name not in names:
            raise ScheduleError(f"{at}: task '{name}' is not one of the schedule's tasks ({', '.join(names)})")
    exact = {n: v for n, v in entries.items() if isinstance(v, dict)}
    shares = {n: v for n, v in entries.items() if not isinstance(v, dict)}
    if exact and shares:
        raise ScheduleError(f"{at}: give every task a share (a number) or every task {{\"steps\": N}}, not both")
    if exact:
        counts = {}
        for name, value in exact.items():
            if set(value) != {"steps"} or not _int(value["steps"]) or value["steps"] < 1:
                raise ScheduleError(f"{at}: task '{name}' has {value!r}: must be {{\"steps\": N}} with N >= 1")
            counts[name] = value["steps"]
        if steps is not None and steps != sum(counts.values()):
            raise ScheduleError(f"{at}: 'steps' is {steps} but its tasks' steps sum to {sum(counts.values())}")
        return Stage(counts)
    for name, value in shares.items():
        if not _number(value) or not value > 0:
            raise ScheduleError(f"{at}: task '{name}' has share {value!r}: must be a positive number (or "
                                "{\"steps\": N})")
    if steps is None:
        raise ScheduleError(f"{at}: shares need the stage's 'steps' (the number of optimizer steps they divide)")
    counts = largest_remainder({n: float(v) for n, v in shares.items()}, steps)
    starved = [n for n, c in counts.items() if c == 0]
    if starved:
        raise ScheduleError(f"{at}: task(s) {starved} get 0 of the stage's {steps} steps at these shares: raise "
                            "their share or the stage's steps")
    return Stage(counts)


def read_schedule(path: str) -> Schedule:
    """Read and check a schedule file (see the module docstring); errors name the file and the entry."""
    raw = load_json(path, "schedule")
    where = str(path)
    if not isinstance(raw, dict):
        raise ScheduleError(f"{where}: a schedule must be a JSON object with 'tasks' and 'stages'")
    unknown = set(raw) - {"tasks", "stages"}
    if unknown:
        raise ScheduleError(f"{where}: unknown key(s) {sorted(unknown)} (known: tasks, stages)")
    tasks = _read_tasks(raw.get("tasks"), where, Path(path).resolve().parent)
    names = tuple(t.name for t in tasks)
    stages_raw = raw.get("stages")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise ScheduleError(f"{where}: 'stages' must be a non-empty list")
    stages = tuple(_read_stage(k, s, where, names) for k, s in enumerate(stages_raw))
    for k in range(1, len(stages)):
        dropped = [n for n in stages[k - 1].counts if n not in stages[k].counts]
        if dropped:
            raise ScheduleError(f"{where}: stages[{k}] drops task(s) {dropped} that stages[{k - 1}] trains: a stage "
                                "keeps the earlier tasks training (ERNIE 2.0's continual schedule); give them a share")
    unused = [n for n in names if not any(n in s.counts for s in stages)]
    if unused:
        raise ScheduleError(f"{where}: task(s) {unused} appear in no stage")
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()
    return Schedule(where, tasks, stages, digest)


def check_targets(schedule: Schedule, processors: dict[str, str], targets_of: dict[str, tuple[str, ...]]
                  ) -> tuple[str, ...]:
    """The model's targets: every task's, in task order; each target in one task only.  processors: task
    name -> its dataset's data processor; targets_of: DATA_PROCESSORS."""
    owner: dict[str, str] = {}
    for task in schedule.tasks:
        for target in targets_of[processors[task.name]]:
            if target in owner:
                raise ScheduleError(f"{schedule.path}: tasks '{owner[target]}' and '{task.name}' both train target "
                                    f"'{target}': each head belongs to one task (merge their corpora into one dataset)")
            owner[target] = task.name
    return tuple(owner)


def tasks_of_steps(plan: np.ndarray, first: int, last: int, tasks: int) -> np.ndarray:
    """(tasks,) int64: how many of steps first..last (1-based, inclusive) each task trains."""
    if last < first:
        return np.zeros(tasks, np.int64)
    return np.bincount(plan[first - 1:last], minlength=tasks).astype(np.int64)


def describe(schedule: Schedule) -> list[str]:
    """Lines that say what the schedule trains (printed at the start of a run)."""
    lines = [f"schedule {schedule.path}: {len(schedule.stages)} stage(s), {schedule.total_steps} steps, tasks "
             + ", ".join(f"{t.name} (id {t.task_id})" for t in schedule.tasks)]
    start = 1
    for k, stage in enumerate(schedule.stages):
        lines.append(f"  stage {k + 1}: steps {start}..{start + stage.steps - 1}: "
                     + ", ".join(f"{name} {count}" for name, count in stage.counts.items()))
        start += stage.steps
    return lines


__all__ = ["Schedule", "ScheduleError", "ScheduleTask", "Stage", "check_targets", "describe", "largest_remainder",
           "read_schedule", "tasks_of_steps"]

