"""The Task interface: a fine-tuning task is a model head + a dataset reader + metrics + an
inference writer.  `uer_ds.tasks.TASKS` maps each name to one instance; `uer-ds finetune <name>` and
`uer-ds infer <name>` take their sub-commands and task flags from it, and the recipes (`uer_ds.recipes`)
drive every task through the same training loop, evaluation, best-model keeping and inference.

A task reads its data into TaskData (examples per head), builds its heads from a spec per head (the
spec is saved in task.json, so inference rebuilds the same heads), turns examples into batches
{"src", "seg", "tgt"} (tgt a dict: labels, and "task" = the head's index), and turns the heads'
per-example predictions into metrics, prediction files and bad cases.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, Sequence

import torch
from torch import nn

from uer_ds.config import ModelConfig
from uer_ds.config.options import add_option_arguments, option, options_from_args
from uer_ds.tasks.data import Example
from uer_ds.tokenizers import Tokenizer


@dataclass
class TaskData:
    """heads: head name -> spec (JSON-able; saved in task.json); train/dev/test: one example list per
    head, in the order of `heads` (test entries None where there is no test file)."""

    heads: dict[str, dict]
    train: list[list[Example]]
    dev: list[list[Example]]
    test: list[Optional[list[Example]]] = field(default_factory=list)


@dataclass(frozen=True)
class TaskOptions:
    """A task's own options (its flags' values), one dataclass per task: its fields' help texts become the
    flags' --help (uer_ds.config.options), as TrainConfig's do.  FINETUNE / INFER name the fields that are
    flags of `uer-ds finetune <task>` / `uer-ds infer <task>`, in that command's group TITLE (those in TOP
    at the top of --help: the data paths); *_DEFAULTS and *_HELPS give one command its own default or help
    text (a field a command gives a default is optional there).  A field that is no flag of a command keeps
    its default there."""

    FINETUNE: ClassVar[tuple[str, ...]] = ()
    INFER: ClassVar[tuple[str, ...]] = ()
    FINETUNE_DEFAULTS: ClassVar[dict[str, Any]] = {}
    INFER_DEFAULTS: ClassVar[dict[str, Any]] = {}
    FINETUNE_HELPS: ClassVar[dict[str, str]] = {}
    INFER_HELPS: ClassVar[dict[str, str]] = {}
    TOP: ClassVar[tuple[str, ...]] = ()
    TITLE: ClassVar[str] = ""

    head: Optional[str] = option("multi-task models: the head (dataset name) to predict with (default: the first)",
                                 default=None)


@dataclass(frozen=True)
class SplitOptions(TaskOptions):
    """--train_path / --dev_path / --test_path of a single-dataset task."""

    TOP: ClassVar[tuple[str, ...]] = ("train_path", "dev_path", "test_path")
    FINETUNE: ClassVar[tuple[str, ...]] = ("train_path", "dev_path", "test_path")

    train_path: Optional[str] = option("training set", default=None, required=True)
    dev_path: Optional[str] = option("development set, evaluated after every epoch", default=None, required=True)
    test_path: Optional[str] = option("labelled test set, evaluated with the best model at the end", default=None)


def add_task_arguments(parser: argparse.ArgumentParser, cls: type, command: str) -> None:
    """The flags of the TaskOptions dataclass `cls` for `command` ("finetune" or "infer")."""
    names = cls.FINETUNE if command == "finetune" else cls.INFER
    defaults = cls.FINETUNE_DEFAULTS if command == "finetune" else cls.INFER_DEFAULTS
    helps = cls.FINETUNE_HELPS if command == "finetune" else cls.INFER_HELPS
    every = {f.name for f in dataclasses.fields(cls)}
    top = [n for n in names if n in cls.TOP]
    grouped = [n for n in names if n not in cls.TOP]
    if top:
        add_option_arguments(parser, cls, exclude=tuple(every - set(top)), defaults=defaults, helps=helps)
    if grouped:
        add_option_arguments(parser.add_argument_group(cls.TITLE), cls, exclude=tuple(every - set(grouped)),
                             defaults=defaults, helps=helps)


class Task:
    """Override what differs; the defaults fit single-text classification-like tasks."""

    name = ""
    help = ""
    metrics: tuple[str, ...] = ("accuracy",)  # --metric choices; the first is the default
    higher_is_better = True
    uer_head: Optional[str] = None  # the kind of UER-py head (uer_ds.convert.uer.UER_HEADS) this task reads
    reads_models_of: tuple[str, ...] = ()  # other tasks whose fine-tuned models this one serves at inference
    # UER-py's default --output_model_path of the task's run_*.py (today's: finetune_opts' for most tasks), and
    # the one its 2019-2020 run_*.py wrote, which that era's inference commands read (see uer_2020_output)
    uer_output_model_path = "models/finetuned_model.bin"
    uer_2020_output_path: Optional[str] = None

    options: type = TaskOptions  # the task's TaskOptions dataclass

    # ---- command line ---------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Task flags for `uer-ds finetune <name>` (data paths included): the options' FINETUNE fields."""
        add_task_arguments(parser, self.options, "finetune")

    def add_infer_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Task flags for `uer-ds infer <name>`: the options' INFER fields."""
        add_task_arguments(parser, self.options, "infer")

    def options_from(self, args: argparse.Namespace) -> TaskOptions:
        """The task's options of the parsed flags (fields with no flag on the command keep their defaults;
        fine-tuning's --labels_num is a model-config flag, present only when given)."""
        return options_from_args(self.options, args)

    # ---- data -----------------------------------------------------------------------------------
    def load(self, options: TaskOptions, tokenizer: Tokenizer, cfg: ModelConfig, seq_length: int) -> TaskData:
        """Every split of the task's data (`options`: its data paths and reading settings), cut at seq_length."""
        raise NotImplementedError

    def read(self, path: str, tokenizer: Tokenizer, seq_length: int, spec: dict, labelled: bool,
             options: Optional[TaskOptions] = None) -> list[Example]:
        """Examples of one file for the head with `spec`; labelled=False for inference input; `options`:
        the task's reading settings (None: the model's, from `spec`)."""
        raise NotImplementedError

    def collate(self, examples: list[Example], head: int, pad_id: int) -> dict:
        """{"src": (B, T), "seg": (B, T), "tgt": {...labels..., "task": head (int)}}.  The runner adds
        "info" (BatchInfo) from `predictions`."""
        raise NotImplementedError

    def onnx_predict(self, spec: dict, outputs: dict[str, torch.Tensor], batch: dict, host: dict) -> Any:
        """What the PyTorch head's predict returns, from an ONNX export's outputs (`uer_ds.tasks.onnx`):
        outputs maps the graph's output names to CPU tensors, batch is this task's collated batch, host the
        head's host-side state (TaggerHead.host_state).  Default (classifiers): the logits (B, labels_num)."""
        return outputs["logits"]

    def predictions(self, batch: dict) -> int:
        """The labelled predictions in a collated batch (its loss's denominator), counted on the host:
        by default the entries of tgt["label"] that are not IGNORE_INDEX, else one per row."""
        from uer_ds.data.batch import count_predictions

        label = batch["tgt"].get("label")
        return count_predictions(label) if label is not None else int(batch["src"].shape[0])

    def uer_spec(self, options: TaskOptions, cfg: ModelConfig, head: dict[str, torch.Tensor], source: str) -> dict:
        """The head spec of a model fine-tuned by UER-py (a .bin at `source`: no task.json), from the task's
        inference options (UER-py's flags) and the head's tensors under our names (`target.<task name>.*`)."""
        raise ValueError(f"models fine-tuned by UER-py load for other tasks, not '{self.name}'")

    def check_infer_flags(self, options: TaskOptions, spec: dict, source: str) -> None:
        """UER-py's inference flags that describe the head (--label2id_path, ...): given values must
        agree with the saved model's `spec`; raises naming both."""

    def check_head_counts(self, options: TaskOptions, info: dict, spec: dict, source: str) -> None:
        """UER-py's inference flags that count a model's outputs (--labels_num, ...), checked against the model
        being served (`info`: its task.json or UER-py's equivalent; `spec`: the head predicted with)."""

    # ---- model ----------------------------------------------------------------------------------
    def build_heads(self, cfg: ModelConfig, heads: dict[str, dict],
                    options: Optional[TaskOptions] = None) -> dict[str, nn.Module]:
        """Fresh heads for the specs; options carries training-only settings (None at inference)."""
        raise NotImplementedError

    # ---- evaluation and output ------------------------------------------------------------------
    def evaluate(self, examples: Sequence[Example], outputs: Sequence[Any], spec: dict,
                 options: TaskOptions) -> dict:
        """Metrics of one head's predictions (outputs: one per example, as predict_outputs gives)."""
        raise NotImplementedError

    def format_report(self, metrics: dict, title: str) -> str:
        return f"{title}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))

    def bad_cases(self, examples: Sequence[Example], outputs: Sequence[Any],
                  spec: dict) -> tuple[list[str], list[list[str]]]:
        """(header, rows) of the wrongly predicted examples, for --bad_case_path."""
        return [], []

    def write_predictions(self, handle, examples: Sequence[Example], outputs: Sequence[Any], spec: dict,
                          options: TaskOptions, header: bool) -> None:
        """Write one batch of predictions (TSV); header=True for the first batch."""
        raise NotImplementedError

    def write_prediction_file(self, handle, examples: Sequence[Example], outputs: Sequence[Any], spec: dict,
                              options: TaskOptions, chunk: int = 4096) -> None:
        """The whole prediction file; by default write_predictions over chunks of examples.  Tasks
        whose output is one document over all examples (a JSON object of answers) override this."""
        for start in range(0, len(examples), chunk):
            self.write_predictions(handle, examples[start: start + chunk], outputs[start: start + chunk], spec,
                                   options, header=start == 0)


def predict_outputs(raw: Any) -> list[Any]:
    """A head's batch predictions (a tensor (B, ...) or a tuple of them) -> one item per example
    (numpy arrays, fp32), the unit that is gathered across ranks and handed to Task.evaluate."""
    if isinstance(raw, torch.Tensor):
        return list(raw.detach().float().cpu().numpy())
    columns = [list(t.detach().float().cpu().numpy()) for t in raw]
    return [tuple(row) for row in zip(*columns)]


__all__ = ["SplitOptions", "Task", "TaskData", "TaskOptions", "add_task_arguments", "predict_outputs"]
