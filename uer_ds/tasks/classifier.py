"""Sentence and sentence-pair classification (UER-py's run_classifier), multi-task classification
(run_classifier_mt: one shared encoder, one head per dataset), and soft-target distillation.

Data: TSV with a header, `label<TAB>text_a[<TAB>text_b]`, labels 0..n-1; with --soft_targets the
training file also has a `logits` column (a teacher's space-separated logits, as
`uer-ds infer classifier --output_logits` writes them).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from uer_ds.config import POOLINGS, ModelConfig
from uer_ds.config.options import option
from uer_ds.models.targets import TargetResult
from uer_ds.models.targets.base import classification_result
from uer_ds.models.targets.cls import ClsTarget
from uer_ds.tasks.base import SplitOptions, Task, TaskData, add_task_arguments
from uer_ds.tasks.data import (Example, TaskDataError, encode_texts, headerless_columns, pad, parse_floats, parse_label,
                               read_label_names, read_tsv, text_column)
from uer_ds.tasks.metrics import classification_metrics, format_classification
from uer_ds.tokenizers import Tokenizer


# ---- the head ------------------------------------------------------------------------------------
def soft_target_result(logits: torch.Tensor, labels: torch.Tensor, soft: Optional[torch.Tensor],
                       alpha: float) -> TargetResult:
    """Cross-entropy on the gold labels; with soft (teacher logits, (B, C)) the distillation loss
    alpha * MSE(logits, soft) + (1 - alpha) * CE (UER-py's --soft_targets)."""
    hard = classification_result(logits, labels)
    if soft is None:
        return hard
    mse = F.mse_loss(logits.float(), soft.float())
    return hard._replace(loss=alpha * mse + (1.0 - alpha) * hard.loss)


def uer_pool(hidden: torch.Tensor, seg: torch.Tensor, pooling: str) -> torch.Tensor:
    """UER-py's pooling (uer/utils/misc.py), for models UER-py fine-tuned: the hidden states are multiplied
    by the segment id before pooling, so in a sentence pair the second segment (id 2) counts twice in
    mean and last, and mean divides by the sum of segment ids; max adds (seg - 1) * 2**63 - 1, which
    masks padding and, in a pair, lifts every second-segment value to about 9.2e18 (UER-py's models
    with max pooling over pairs see constant features; this reproduces their predictions).  Equal to
    `pool` for single texts.  (B, T, H) -> (B, H)."""
    weight = seg.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1): 0 padding, 1 or 2
    scaled = hidden * weight
    if pooling == "mean":
        return scaled.sum(dim=1) / weight.sum(dim=1)
    if pooling == "max":
        return (scaled + (weight - 1) * float(sys.maxsize)).max(dim=1).values
    if pooling == "last":
        last = (seg != 0).sum(dim=1) - 1  # (B,)
        return scaled[torch.arange(hidden.shape[0], device=hidden.device), last]
    return scaled[:, 0]


class ClassifierHead(ClsTarget):
    """pooling -> linear (hidden -> hidden) -> tanh -> linear (hidden -> labels_num): UER-py's
    classifier head, the pre-training `cls` target's layers.  (B, T, H) -> logits (B, labels_num).
    uer_pooling: pool as UER-py does (see uer_pool), for models fine-tuned by UER-py."""

    def __init__(self, cfg: ModelConfig, labels_num: int, pooling: str, soft_alpha: float = 0.5,
                 uer_pooling: bool = False) -> None:
        super().__init__(cfg.replace(labels_num=labels_num, pooling=pooling))
        self.soft_alpha = soft_alpha
        self.uer_pooling = uer_pooling

    def logits(self, hidden: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:  # -> (B, labels_num)
        if not self.uer_pooling:
            return super().logits(hidden, seg)
        return self.linear_2(torch.tanh(self.linear_1(uer_pool(hidden, seg, self.pooling))))

    def forward(self, hidden: torch.Tensor, tgt: dict, seg: torch.Tensor) -> TargetResult:
        """tgt: {"label": (B,), optional "soft": (B, labels_num)}."""
        return soft_target_result(self.logits(hidden, seg), tgt["label"], tgt.get("soft"), self.soft_alpha)

    def predict(self, hidden: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        return self.logits(hidden, seg)


# ---- the task ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassifierOptions(SplitOptions):
    """The classifier's options (and the base of the classification-like tasks')."""

    TITLE: ClassVar[str] = "classifier"
    FINETUNE: ClassVar[tuple[str, ...]] = ("train_path", "dev_path", "test_path", "soft_targets", "soft_alpha", "top_k",
                                           "label_path", "no_header")
    INFER: ClassVar[tuple[str, ...]] = ("labels_num", "output_logits", "output_prob", "top_k", "head",
                                        "labels_num_list", "label_path", "no_header")
    FINETUNE_DEFAULTS: ClassVar[dict[str, Any]] = {"top_k": 2}
    INFER_DEFAULTS: ClassVar[dict[str, Any]] = {"top_k": 1}
    INFER_HELPS: ClassVar[dict[str, str]] = {
        "top_k": "add `top_k_labels` and `top_k_probs` columns with the k best labels (k > 1)",
        "label_path": "label names, one per line (PaddleNLP's label.txt): the label column holds names, predictions "
                      "are written with them (checked against the model)",
        "no_header": "files without a header row, columns text_a[<TAB>text_b]<TAB>label (PaddleNLP's order); default: "
                     "as the model was fine-tuned"}

    # fine-tuning's --labels_num is the model-config flag (given or not); inference's is this field's flag
    labels_num: Optional[int] = option("classes; checked against the model (default: the model's)", default=None)
    soft_targets: bool = option("distillation: the training file has a `logits` column (teacher logits); loss = "
                                "soft_alpha * MSE(logits) + (1 - soft_alpha) * CE", default=False)
    soft_alpha: float = option("weight of the soft-target MSE (default 0.5)", default=0.5)
    output_logits: bool = option("add a `logits` column", default=False)
    output_prob: bool = option("add a `prob` column (softmax)", default=False)
    top_k: Optional[int] = option("also report top-k accuracy (default 2; 1: off)", default=None)
    labels_num_list: Optional[list[int]] = option(
        "UER-py's run_classifier_mt_infer.py: each head's classes, in order; checked against the model", default=None,
        nargs="+")
    label_path: Optional[str] = option("label names, one per line (PaddleNLP's label.txt): the label column holds "
                                       "names, predictions are written with them", default=None)
    no_header: Optional[bool] = option("files without a header row, columns text_a[<TAB>text_b]<TAB>label "
                                       "(PaddleNLP's order)", default=None)


@dataclass(frozen=True)
class MtClassifierOptions(ClassifierOptions):
    """mt_classifier: dataset folders instead of the three files."""

    TOP: ClassVar[tuple[str, ...]] = ("dataset_path_list",)
    FINETUNE: ClassVar[tuple[str, ...]] = ("dataset_path_list", "top_k")

    dataset_path_list: Optional[list[str]] = option(
        "dataset folders, each with train.tsv and dev.tsv (test.tsv: evaluated at the end); the heads are named after "
        "the folders", default=None, nargs="+", required=True, metavar="DIR")


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    """--train_path / --dev_path / --test_path (reusable by any single-dataset task)."""
    add_task_arguments(parser, SplitOptions, "finetune")


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


class ClassifierTask(Task):
    name = "classifier"
    uer_2020_output_path = "models/classifier_model.bin"
    help = "sentence / sentence-pair classification (UER-py run_classifier; --soft_targets for distillation)"
    metrics = ("accuracy", "macro_f1", "mcc")  # mcc: Matthews correlation (GLUE's CoLA), in report.json
    # `infer classifier --head NAME` serves multi-task models; UER-py infers DBQA with run_classifier_infer.py
    reads_models_of = ("classifier", "mt_classifier", "dbqa")
    uer_head = "classifier"
    options = ClassifierOptions

    def uer_spec(self, options: ClassifierOptions, cfg: ModelConfig, head: dict[str, torch.Tensor], source: str) -> dict:
        """run_classifier.py's head: labels_num from its output layer, pooling from the config/flags,
        UER-py's pooling arithmetic."""
        weight = head.get(f"target.{self.name}.linear_2.weight")
        if weight is None:
            raise ValueError(f"{source}: no output_layer_2.weight: not a model of UER-py's "
                             "run_classifier.py")
        return {"labels_num": int(weight.shape[0]), "pooling": cfg.pooling, "soft": False, "uer_pooling": True}

    def check_infer_flags(self, options: ClassifierOptions, spec: dict, source: str) -> None:
        """--label_path (PaddleNLP's), when given, must hold the model's label names."""
        if options.label_path:
            names = read_label_names(options.label_path)
            if names != spec.get("label_names"):
                raise ValueError(f"--label_path {options.label_path} has labels {names} but the model in {source} has "
                                 f"{spec.get('label_names') or 'label ids, no names'}")

    def check_head_counts(self, options: ClassifierOptions, info: dict, spec: dict, source: str) -> None:
        """UER-py's --labels_num / --labels_num_list (the classifiers' inference flags), when given, must be
        the model's (`spec`: the head predicted with; `info`: task.json, every head); ValueError naming both."""
        if options.labels_num is not None and options.labels_num != spec.get("labels_num"):
            raise ValueError(f"--labels_num {options.labels_num} disagrees with the model in {source} "
                             f"({spec.get('labels_num')} labels)")
        saved = [s.get("labels_num") for s in info["heads"].values()]
        if options.labels_num_list is not None and options.labels_num_list != saved:
            raise ValueError(f"--labels_num_list {' '.join(map(str, options.labels_num_list))} disagrees with the model "
                             f"in {source} (heads {', '.join(info['heads'])} with {saved} labels)")

    # ---- data -----------------------------------------------------------------------------------
    @staticmethod
    def columns(path: str, spec: dict, labelled: bool, options: Optional[ClassifierOptions]) -> Optional[list[str]]:
        """None for a file with a header row; the columns of a header-less one (--no_header)."""
        no_header = options.no_header if options is not None else None
        if not (spec.get("no_header") if no_header is None else no_header):
            return None
        return headerless_columns(path, labelled, spec.get("pair"))

    def read(self, path: str, tokenizer: Tokenizer, seq_length: int, spec: dict, labelled: bool,
             options: Optional[ClassifierOptions] = None) -> list[Example]:
        soft = labelled and bool(options is not None and options.soft_targets and spec.get("soft"))
        required = ["label", "text_a"] if labelled else ["text_a"]
        if soft:
            required.append("logits")
        header, rows = read_tsv(path, required, optional=["text_b"], columns=self.columns(path, spec, labelled, options))
        pair = "text_b" in header
        if "pair" in spec and pair != spec["pair"]:
            raise TaskDataError(f"{path}:1: header {header}: the model classifies "
                                f"{'pairs (text_a, text_b)' if spec['pair'] else 'single texts (text_a)'}, "
                                f"this file has {'pairs' if pair else 'single texts'}")
        labels_num = spec.get("labels_num")
        examples = []
        for row in rows:
            texts = [text_column(row, "text_a")] + ([text_column(row, "text_b")] if pair else [])
            src, seg = encode_texts(tokenizer, texts, seq_length)
            label = self.parse_gold(row, labels_num, spec.get("label_names")) if labelled else None
            extra = {"soft": parse_floats(row, "logits", labels_num)} if soft else {}
            examples.append(Example(row.where, {k: row.values[k] for k in ("text_a", "text_b") if k in row.values},
                                    src, seg, label, extra))
        return examples

    @staticmethod
    def parse_gold(row, labels_num: Optional[int], names: Optional[list[str]]) -> Any:
        return parse_label(row, labels_num, names=names)

    def label_spec(self, options: ClassifierOptions, cfg: ModelConfig) -> dict:
        """What every head of this task records about its labels and files: the label count (--labels_num,
        else the names of --label_path, else counted from the training set), names, header-less files."""
        labels_num = options.labels_num  # fine-tuning: the model-config flag, None unless given
        if labels_num is not None and int(labels_num) <= 0:
            raise ValueError(f"--labels_num has value {labels_num}: must be positive")
        names = read_label_names(options.label_path) if options.label_path else None
        if names is not None and labels_num is not None and int(labels_num) != len(names):
            raise ValueError(f"--labels_num {labels_num} disagrees with --label_path {options.label_path} "
                             f"({len(names)} names)")
        spec = {"labels_num": len(names) if names else (None if labels_num is None else int(labels_num)),
                "pooling": cfg.pooling, "soft": bool(options.soft_targets)}
        if names:
            spec["label_names"] = names
        if options.no_header:
            spec["no_header"] = True
        return spec

    def load(self, options: ClassifierOptions, tokenizer: Tokenizer, cfg: ModelConfig, seq_length: int) -> TaskData:
        spec = self.label_spec(options, cfg)
        if options.soft_targets and spec["labels_num"] is None:
            spec["labels_num"] = _count_labels(options.train_path)
        train = self.read(options.train_path, tokenizer, seq_length, spec, True, options)
        if spec["labels_num"] is None:
            spec["labels_num"] = self.count_labels(train)
        spec["pair"] = "text_b" in train[0].text
        plain = dataclasses.replace(options, soft_targets=False)  # dev and test have no teacher logits
        dev = self.read(options.dev_path, tokenizer, seq_length, spec, True, plain)
        test = self.read(options.test_path, tokenizer, seq_length, spec, True, plain) if options.test_path else None
        return TaskData({self.name: spec}, [train], [dev], [test])

    @staticmethod
    def count_labels(examples: list[Example]) -> int:
        return max(e.tgt for e in examples) + 1

    def collate(self, examples: list[Example], head: int, pad_id: int) -> dict:
        tgt: dict[str, Any] = {"task": head}
        if examples[0].tgt is not None:
            tgt["label"] = torch.tensor([e.tgt for e in examples], dtype=torch.long)
        if "soft" in examples[0].extra:
            tgt["soft"] = torch.tensor([e.extra["soft"] for e in examples], dtype=torch.float32)
        return {"src": pad([e.src for e in examples], pad_id), "seg": pad([e.seg for e in examples], 0), "tgt": tgt}

    # ---- model ----------------------------------------------------------------------------------
    def build_heads(self, cfg: ModelConfig, heads: dict[str, dict],
                    options: Optional[ClassifierOptions] = None) -> dict[str, nn.Module]:
        if cfg.encoder == "dual":
            raise ValueError("the classifier takes one encoder; siamese (dual) models are not supported yet")
        alpha = float(options.soft_alpha) if options is not None else 0.5
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"--soft_alpha has value {alpha}: must be in [0, 1]")
        out = {}
        for name, spec in heads.items():
            if spec["pooling"] not in POOLINGS:
                raise ValueError(f"head '{name}': pooling '{spec['pooling']}' must be one of {', '.join(POOLINGS)}")
            out[name] = ClassifierHead(cfg, int(spec["labels_num"]), spec["pooling"], alpha,
                                       uer_pooling=bool(spec.get("uer_pooling")))
        return out

    # ---- evaluation and output ------------------------------------------------------------------
    def evaluate(self, examples: Sequence[Example], outputs: Sequence[Any], spec: dict,
                 options: ClassifierOptions) -> dict:
        gold = np.array([e.tgt for e in examples], dtype=np.int64)
        metrics = classification_metrics(gold, np.stack(outputs), top_k=options.top_k)
        return _named(metrics, spec.get("label_names"))

    def format_report(self, metrics: dict, title: str) -> str:
        return format_classification(metrics, title)

    def bad_cases(self, examples: Sequence[Example], outputs: Sequence[Any],
                  spec: dict) -> tuple[list[str], list[list[str]]]:
        texts = ["text_a", "text_b"] if spec.get("pair") else ["text_a"]
        name = label_namer(spec)
        probs = softmax(np.stack(outputs))
        rows = []
        for example, prob in zip(examples, probs):
            pred = int(prob.argmax())
            if pred != example.tgt:
                rows.append([example.source, name(example.tgt), name(pred), f"{prob[pred]:.4f}",
                             *(example.text[t] for t in texts)])
        return ["source", "gold", "predicted", "confidence", *texts], rows

    def write_predictions(self, handle, examples: Sequence[Example], outputs: Sequence[Any], spec: dict,
                          options: ClassifierOptions, header: bool) -> None:
        logits = np.stack(outputs)
        probs = softmax(logits)
        name = label_namer(spec)
        k = min(int(options.top_k or 1), logits.shape[1])
        if header and not _headerless_output(options, spec):
            columns = (["label"] + (["logits"] if options.output_logits else [])
                       + (["prob"] if options.output_prob else []))
            columns += ["top_k_labels", "top_k_probs"] if k > 1 else []
            handle.write("\t".join(columns) + "\n")
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        for row_logits, row_probs, top in zip(logits, probs, order):
            cells = [name(int(top[0]))]
            if options.output_logits:
                cells.append(" ".join(f"{v:.6g}" for v in row_logits))
            if options.output_prob:
                cells.append(" ".join(f"{v:.6g}" for v in row_probs))
            if k > 1:
                cells += [" ".join(name(int(i)) for i in top), " ".join(f"{row_probs[i]:.6g}" for i in top)]
            handle.write("\t".join(cells) + "\n")


def label_namer(spec: dict):
    """id -> the text written for it: its --label_path name, else the id."""
    names = spec.get("label_names")
    return (lambda i: names[i]) if names else str


def _named(metrics: dict, names: Optional[list[str]]) -> dict:
    """Per-class rows labelled with their names (when the model has them)."""
    if names:
        for row in metrics["per_class"]:
            row["label"] = names[row["label"]]
    return metrics


def _headerless_output(options: ClassifierOptions, spec: dict) -> bool:
    """Predictions for a header-less input (PaddleNLP's flow) are written without a header too."""
    flag = options.no_header
    return bool(spec.get("no_header") if flag is None else flag)


def _count_labels(path: str) -> int:
    """labels_num from a training file's labels (max + 1), read before the logits are checked."""
    _, rows = read_tsv(path, ["label"])
    return max(parse_label(row, None) for row in rows) + 1


class MtClassifierTask(ClassifierTask):
    name = "mt_classifier"
    uer_output_model_path = "models/multitask_classifier_model.bin"  # run_classifier_mt.py's, 2020 and today
    uer_2020_output_path = None
    help = ("multi-task classification: one shared encoder, one head per dataset, interleaved batches "
            "(UER-py run_classifier_mt); the result loads into `finetune classifier`")

    options = MtClassifierOptions

    def load(self, options: MtClassifierOptions, tokenizer: Tokenizer, cfg: ModelConfig, seq_length: int
             ) -> TaskData:
        if options.labels_num is not None:
            raise ValueError("--labels_num: mt_classifier counts each dataset's labels from its train.tsv")
        heads: dict[str, dict] = {}
        train, dev, test = [], [], []
        for folder in options.dataset_path_list:
            path = Path(folder)
            if not path.is_dir():
                raise FileNotFoundError(f"--dataset_path_list: '{folder}' is not a folder (it should hold train.tsv "
                                        "and dev.tsv)")
            name = path.resolve().name or "dataset"
            if name in heads:
                name = f"{name}_{len(heads)}"
            spec = {"labels_num": None, "pooling": cfg.pooling, "soft": False}
            examples = self.read(str(path / "train.tsv"), tokenizer, seq_length, spec, True)
            spec["labels_num"] = max(e.tgt for e in examples) + 1
            spec["pair"] = "text_b" in examples[0].text
            train.append(examples)
            dev.append(self.read(str(path / "dev.tsv"), tokenizer, seq_length, spec, True))
            test_file = path / "test.tsv"
            test.append(self.read(str(test_file), tokenizer, seq_length, spec, True)
                        if os.path.isfile(test_file) else None)
            heads[name] = spec
        return TaskData(heads, train, dev, test)


__all__ = ["ClassifierHead", "ClassifierOptions", "ClassifierTask", "MtClassifierOptions", "MtClassifierTask",
           "add_split_arguments", "soft_target_result"]
