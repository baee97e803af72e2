"""A fine-tuned model ready to predict: the resolver's task directory or ONNX export, its tokenizer and
the head to predict with, and texts -> examples -> outputs through the runner's own batching
(uer_ds.recipes.predict.predict_examples), so `evaluate`, `serve` and `infer` compute the same numbers."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch

from uer_ds.tasks.base import Task
from uer_ds.tasks.data import Example, encode_texts


@dataclass
class Predictor:
    """task: the Task of the model's task.json; info: that task.json; head_name/head: the head predicted
    with and its index in the model; spec: the head's spec; kind: "task" (PyTorch) or "onnx"
    (onnxruntime); forward(batch) -> the head's raw outputs; collate(examples, head) -> a batch."""

    path: str
    kind: str
    task: Task
    info: dict
    head_name: str
    head: int
    spec: dict
    tokenizer: Any
    seq_length: int
    forward: Callable[[dict], Any]
    collate: Callable[[list[Example], int], dict]

    @property
    def pair(self) -> bool:
        """Whether the head classifies sentence pairs (text_a, text_b)."""
        return bool(self.spec.get("pair"))

    def examples(self, texts: Sequence[Sequence[str]], source: str = "<request>") -> list[Example]:
        """Examples of raw texts ([text_a] or [text_a, text_b] each), encoded as the task's reader encodes a
        file row (uer_ds.tasks.data.encode_texts, cut at seq_length)."""
        out = []
        for i, group in enumerate(texts):
            src, seg = encode_texts(self.tokenizer, group, self.seq_length)
            names = ("text_a", "text_b")[: len(group)]
            out.append(Example(f"{source}[{i}]", dict(zip(names, group)), src, seg))
        return out

    def predict(self, examples: Sequence[Example], batch_size: int) -> list[Any]:
        """One output per example (for a classifier: its logits, (labels_num,) float32), in order."""
        from uer_ds.recipes.predict import predict_examples

        return predict_examples(self.forward, examples, self.head, self.collate, batch_size)


def task_and_head(info: dict, path: str, flag: str, head: Optional[str],
                  seq_length: Optional[int]) -> tuple[Task, list[str], str]:
    """(the Task of a model's task.json `info`, its head names, the head to use: `head` or the first).  Raises
    ValueError naming `flag` for a task this version does not know, and for a head or seq_length the model does
    not have."""
    from uer_ds.tasks import TASKS

    task = TASKS.get(info.get("task"))
    if task is None:
        raise ValueError(f"{flag} '{path}': a model for task '{info.get('task')}', which this version does not know "
                         f"(tasks: {', '.join(TASKS)})")
    names = list(info["heads"])
    head_name = head or names[0]
    if head_name not in names:
        raise ValueError(f"--head '{head_name}': the model in {path} has heads {names}")
    if seq_length is not None and seq_length <= 0:
        raise ValueError(f"--seq_length has value {seq_length}: must be positive")
    return task, names, head_name


def load_predictor(path: str, args: argparse.Namespace, flag: str = "--load_model_path",
                   head: Optional[str] = None, seq_length: Optional[int] = None) -> Predictor:
    """The model at `path` (a task directory from `uer-ds finetune` or an ONNX file from `uer-ds export
    onnx`), recognised by the resolver, with its tokenizer (args: the tokenizer flags; default what
    task.json records) and the head `head` (default the first).  Raises ValueError naming `flag` for
    any other kind of path, and for a head or seq_length the model does not have."""
    from uer_ds.convert.resolve import resolve_model
    from uer_ds.recipes.infer import infer_tokenizer
    from uer_ds.recipes.predict import batch_maker

    source = resolve_model(path, flag, kinds=("task", "onnx"))
    info = source.task_info()
    task, names, head_name = task_and_head(info, path, flag, head, seq_length)
    tokenizer = infer_tokenizer(args, info)
    if source.kind == "onnx":
        forward, _ = source.onnx_forward()
    else:
        from uer_ds.recipes.predict import module_forward

        model, _ = source.task_model(lambda c, i: task.build_heads(c, i["heads"]), device="cpu")
        forward = module_forward(model, torch.device("cpu"))
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    return Predictor(str(path), source.kind, task, info, head_name, names.index(head_name), info["heads"][head_name],
                     tokenizer, seq_length or int(info["seq_length"]), forward,
                     batch_maker(task, names, pad_id, tokenizer))


__all__ = ["Predictor", "load_predictor", "task_and_head"]
