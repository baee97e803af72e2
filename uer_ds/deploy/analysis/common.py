"""The analyses' few calls into the rest of uer_ds: a fine-tuned classifier loaded as a torch module with its
tokenizer and head (through the resolver, as `uer-ds evaluate` loads one), a labelled or unlabelled file read
as the task reads it, batches run through the model with the head's pooled vectors captured, and outputs
written atomically (all files of a command together, or none)."""
from __future__ import annotations

import argparse
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import nn

from uer_ds.atomic import atomic_paths
from uer_ds.tasks.data import Example, pad


@dataclass
class Classifier:
    """A fine-tuned classifier ready for analysis.  model: the TaskModel (eval mode, CPU, float32); head: the
    head's index (the batch's tgt["task"]); head_module: the ClassifierHead; spec: the head's task.json spec;
    tokenizer: the model's tokenizer; seq_length: the longest input; task: the Task (reads files)."""

    path: str
    model: nn.Module
    task: Any
    info: dict
    head_name: str
    head: int
    head_module: nn.Module
    spec: dict
    tokenizer: Any
    seq_length: int

    @property
    def labels_num(self) -> int:
        return int(self.spec["labels_num"])

    def label_name(self, label: Optional[int]) -> str:
        """The label's --label_path name, else its id ('' for None)."""
        if label is None:
            return ""
        names = self.spec.get("label_names")
        return names[label] if names else str(label)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_id if self.tokenizer.pad_id is not None else 0

    def logits(self, src: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """src, seg: (B, T) long -> logits (B, labels_num) float32 (with gradients if enabled)."""
        return self.model(src, {"task": self.head}, seg, predict=True)


def load_classifier(path: str, args: argparse.Namespace, head: Optional[str] = None,
                    seq_length: Optional[int] = None, flag: str = "--load_model_path") -> Classifier:
    """The task directory at `path` (written by `uer-ds finetune`) as a Classifier.  args: the tokenizer flags
    (default: what task.json records).  Raises ValueError naming `flag` for another kind of path (an ONNX file
    has no gradients or pooled vectors to read), a task that is not a classifier, a head the model lacks."""
    from uer_ds.convert.resolve import resolve_model
    from uer_ds.deploy.predictor import task_and_head
    from uer_ds.tasks.classifier import ClassifierHead
    from uer_ds.recipes.infer import infer_tokenizer

    source = resolve_model(path, flag, kinds=("task",))
    info = source.task_info()
    task, names, head_name = task_and_head(info, path, flag, head, seq_length)
    tokenizer = infer_tokenizer(args, info)
    model, _ = source.task_model(lambda c, i: task.build_heads(c, i["heads"]), device="cpu")
    module = model.target[head_name]
    if not isinstance(module, ClassifierHead):
        raise ValueError(f"{flag} '{path}': head '{head_name}' of task '{task.name}' is not a classifier head "
                         "(the analyses take classifier, mt_classifier and dbqa models)")
    return Classifier(str(path), model.float().eval(), task, info, head_name, names.index(head_name), module,
                      info["heads"][head_name], tokenizer, seq_length or int(info["seq_length"]))


def has_labels(classifier: Classifier, path: str, args: argparse.Namespace) -> bool:
    """Whether the file has a label column (a header naming `label`, or a header-less file's extra column)."""
    from uer_ds.tasks.data import read_tsv

    columns = classifier.task.columns(path, classifier.spec, False, classifier.task.options_from(args))
    if columns is not None:
        return "label" in columns
    header, _ = read_tsv(path, ["text_a"], optional=["text_b", "label"])
    return "label" in header


def read_examples(classifier: Classifier, path: str, args: argparse.Namespace,
                  labelled: Optional[bool] = None) -> list[Example]:
    """The file's rows as the task reads them (Example.source 'file:line', .tgt the label id or None).
    labelled None: labelled when the file has a label column.  Errors name the file and line."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"'{path}': no such file")
    if labelled is None:
        labelled = has_labels(classifier, path, args)
    examples = classifier.task.read(path, classifier.tokenizer, classifier.seq_length, classifier.spec,
                                    labelled=labelled, options=classifier.task.options_from(args))
    if not examples:
        raise ValueError(f"'{path}': no examples")
    return examples


def line_of(example: Example) -> int:
    """The 1-based line number in its file of an example whose source is 'file:line'."""
    return int(example.source.rsplit(":", 1)[1])


@torch.no_grad()
def run_batches(classifier: Classifier, examples: Sequence[Example], batch_size: int, progress: bool = False,
                desc: str = "vectors") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits (N, C), pooled (N, H), penultimate (N, H)) float32 in example order.  pooled: the input of the
    head's first linear layer (the pooled hidden state, e.g. [CLS] for pooling 'first'); penultimate: the input
    of its output layer (tanh(linear_1(pooled)), what BERT's pooler_output is)."""
    from tqdm import tqdm

    captured: dict[str, torch.Tensor] = {}
    hooks = [classifier.head_module.linear_1.register_forward_pre_hook(lambda m, a: captured.__setitem__("pooled",
                                                                                                          a[0])),
             classifier.head_module.linear_2.register_forward_pre_hook(lambda m, a: captured.__setitem__("last",
                                                                                                         a[0]))]
    logits, pooled, last = [], [], []
    try:
        for start in tqdm(range(0, len(examples), batch_size), desc=desc, disable=not progress, leave=False):
            chunk = examples[start: start + batch_size]
            src, seg = pad([e.src for e in chunk], classifier.pad_id), pad([e.seg for e in chunk], 0)
            logits.append(classifier.logits(src, seg).float())
            pooled.append(captured["pooled"].float())
            last.append(captured["last"].float())
    finally:
        for hook in hooks:
            hook.remove()
    return tuple(torch.cat(x).numpy() for x in (logits, pooled, last))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, (N, C) -> (N, C) float64."""
    shifted = np.exp(logits.astype(np.float64) - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


@contextlib.contextmanager
def output_dir(path: str) -> Iterator[Path]:
    """The --output_dir, made if missing and locked for this process while the block runs (uer_ds.outputs:
    two runs never write one directory at once; a directory this call made is removed again when nothing was
    written to it).  Raises NotADirectoryError when it is a file, OutputInUseError when another run holds it."""
    from uer_ds.outputs import lock_output

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--output_dir '{path}' is a file, not a directory")
    with lock_output(out, "--output_dir"):
        yield out


@contextlib.contextmanager
def writing(*targets: Path) -> Iterator[tuple[Path, ...]]:
    """Temporaries for `targets`, renamed over them together when the block succeeds (uer_ds.atomic; a full
    disk is reported by uer_ds.outputs.writing, the temporaries removed)."""
    from uer_ds.outputs import writing as reported

    with reported(targets[0], what="files", removed=True), atomic_paths(*targets) as tmps:
        yield tmps


def write_tsv(path: os.PathLike, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A TSV with a header row; tabs and newlines inside a cell are replaced by spaces."""
    with open(path, "w", encoding="utf-8") as f:
        for row in [header, *rows]:
            f.write("\t".join(" ".join(str(cell).split("\t")).replace("\n", " ").replace("\r", " ")
                              for cell in row) + "\n")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--load_model_path, --head, --seq_length, --batch_size, --no_header, --no_progress and the tokenizer flags."""
    from uer_ds.recipes.inputs import add_tokenizer_arguments

    parser.add_argument("--load_model_path", required=True, help="a task directory written by `uer-ds finetune`")
    parser.add_argument("--head", help="multi-task models: the head to analyse (default: the first)")
    parser.add_argument("--seq_length", type=int, help="longest input (default: the fine-tuning seq_length)")
    parser.add_argument("--batch_size", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--no_header", action="store_true", default=None,
                        help="files without a header row (PaddleNLP's text_a[<TAB>text_b]<TAB>label; default: as "
                             "the model was fine-tuned)")
    parser.add_argument("--output_dir", required=True, help="where the output files go (created)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    add_tokenizer_arguments(parser, subwords=True)


def check_positive(**values: Optional[int]) -> None:
    """ValueError naming the first flag whose value is not a positive integer."""
    for name, value in values.items():
        if value is not None and value <= 0:
            raise ValueError(f"--{name} has value {value}: must be positive")
