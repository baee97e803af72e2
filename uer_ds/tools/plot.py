"""Learning curves of training runs: `uer-ds plot RUN [RUN ...] --output_dir DIR`.

A RUN is what `uer-ds pretrain` / `uer-ds finetune` leave behind: a metrics file (`--metrics_path`, one JSON
line per report step and per evaluation, evaluations marked with "split"), or a directory holding TensorBoard
event files (the default `<output_model_path>/tensorboard`, or any folder above it).  Both carry the same
scalars: `loss`, `lr`, per-target `<target>_loss` / `<target>_acc` (TensorBoard: `loss/<target>`,
`accuracy/<target>`) and each evaluation's numbers (`dev/<name>`, `test/<name>`).

One figure per quantity (training loss, the learning rate, each target's loss and accuracy, each dev/test
number), every run drawn in it and labelled (its file or directory name, or --labels); PNG or SVG through
matplotlib's Agg backend (no display needed).
"""
from __future__ import annotations

import json
import math
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence, Union

PathLike = Union[str, os.PathLike]
Series = dict[str, list[tuple[int, float]]]  # quantity -> [(step, value)] in step order

# report-line keys that are not learning curves (throughput and engine counters)
SKIPPED = {"step", "split", "tokens_per_s", "samples_per_s", "memory_gb", "loss_scale", "skipped_steps", "examples"}


def _tensorboard_key(tag: str) -> str:
    """TensorBoard tag -> the metrics file's key: loss/mlm -> mlm_loss, accuracy/mlm -> mlm_acc."""
    kind, _, name = tag.partition("/")
    if kind == "loss" and name:
        return f"{name}_loss"
    if kind == "accuracy" and name:
        return f"{name}_acc"
    return tag


def read_metrics_file(path: PathLike) -> Series:
    """The scalar series of a metrics JSON-lines file; evaluation lines under `<split>/<name>`.
    ValueError names the file and line of a line that is not a JSON object with a step."""
    series: Series = defaultdict(list)
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                step = int(record["step"])
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{path}:{number}: not a metrics line (a JSON object with a 'step'), as "
                                 "--metrics_path writes them") from None
            prefix = f"{record['split']}/" if "split" in record else ""
            for key, value in record.items():
                if key in SKIPPED or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                if math.isfinite(value):
                    series[prefix + key].append((step, float(value)))
    return {k: sorted(v) for k, v in series.items()}


def read_tensorboard(directory: PathLike) -> Series:
    """The scalar series of every TensorBoard event file under `directory` (later files win on a step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, dict[int, float]] = defaultdict(dict)
    files = sorted(Path(directory).rglob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)
    for event_file in files:
        accumulator = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags().get("scalars", []):
            key = _tensorboard_key(tag)
            if key.split("/")[-1] in SKIPPED:
                continue
            for event in accumulator.Scalars(tag):
                series[key][int(event.step)] = float(event.value)
    return {k: sorted(v.items()) for k, v in series.items()}


def read_run(path: PathLike) -> Series:
    """A metrics file, or a directory with TensorBoard event files in it (searched recursively).
    FileNotFoundError / ValueError name the path and what was expected."""
    path = Path(path)
    if path.is_file():
        return read_metrics_file(path)
    if path.is_dir():
        if not any(path.rglob("events.out.tfevents.*")):
            raise ValueError(f"{path}: no TensorBoard event files in it (a run's <output_model_path>/tensorboard, or "
                             "give its --metrics_path file)")
        return read_tensorboard(path)
    raise FileNotFoundError(f"{path}: no such file or directory")


def _label(path: PathLike) -> str:
    path = Path(path)
    name = path.stem if path.is_file() else path.name
    return path.parent.name if name in ("tensorboard", "metrics") and path.parent.name else name


def _title(quantity: str) -> str:
    split, _, name = quantity.rpartition("/")
    for suffix, what in (("_loss", "loss"), ("_acc", "accuracy")):
        if name.endswith(suffix) and name != suffix.strip("_"):
            name = f"{name[: -len(suffix)]} {what}"
    if split:
        return f"{split} {name}"
    return "learning rate" if name == "lr" else f"training {name}"


def plot_runs(runs: Sequence[PathLike], output_dir: PathLike, labels: Optional[Sequence[str]] = None,
              quantities: Optional[Sequence[str]] = None, image_format: str = "png") -> list[Path]:
    """One figure per quantity over all runs -> `<output_dir>/<quantity>.<format>` ('/' becomes '_').
    quantities: only these (default: every quantity any run has).  Returns the files written.
    ValueError: labels of another length than runs, an unknown format, a quantity no run has."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError("uer-ds plot needs matplotlib: pip install 'uer_ds[plot]' (or matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if image_format not in ("png", "svg"):
        raise ValueError(f"--format has value '{image_format}': must be png or svg")
    if labels is not None and len(labels) != len(runs):
        raise ValueError(f"--labels has {len(labels)} name(s) for {len(runs)} run(s)")
    data = [read_run(run) for run in runs]
    names = list(labels) if labels is not None else [_label(run) for run in runs]
    found = sorted({q for series in data for q in series}, key=lambda q: (q.count("/"), q))
    if quantities:
        missing = [q for q in quantities if q not in found]
        if missing:
            raise ValueError(f"--quantities {missing}: no run has them; the runs have {found}")
        found = list(quantities)
    if not found:
        raise ValueError(f"{', '.join(map(str, runs))}: no scalar to plot")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for quantity in found:
        figure, axes = plt.subplots(figsize=(6.4, 4.0))
        for name, series in zip(names, data):
            points = series.get(quantity)
            if points:
                steps, values = zip(*points)
                axes.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3, label=name)
        axes.set_xlabel("step")
        axes.set_title(_title(quantity))
        axes.grid(alpha=0.3)
        if quantity == "lr":
            axes.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        axes.legend()
        figure.tight_layout()
        target = out / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', quantity)}.{image_format}"
        figure.savefig(target, dpi=110)
        plt.close(figure)
        written.append(target)
    return written


__all__ = ["plot_runs", "read_metrics_file", "read_run", "read_tensorboard"]
