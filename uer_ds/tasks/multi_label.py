"""Multi-label classification (UER-py's run_classifier_multi_label; PaddleNLP's multi-label guide):
each example has any number of labels out of labels_num.

Data: the classifier's TSV, the label column a comma-separated list (`0,3`; with --label_path, names:
`体育,财经`; an empty column: no label); --no_header reads PaddleNLP's header-less `text<TAB>labels`.
Head: the classifier's layers, one sigmoid per label; loss = binary cross-entropy averaged over
labels and examples (UER-py's nn.BCELoss on sigmoid outputs).  A label is predicted when its
probability exceeds --threshold (0.5, UER-py's).  Metrics: micro and macro precision/recall/F1
(scikit-learn's definitions; a class with no prediction or no gold example scores 0) and subset
accuracy (all labels right: UER-py's accuracy).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from uer_ds.config import ModelConfig
from uer_ds.config.options import option
from uer_ds.models.targets import TargetResult
from uer_ds.tasks.classifier import ClassifierHead, ClassifierOptions, ClassifierTask, label_namer, _headerless_output
from uer_ds.tasks.base import TaskOptions
from uer_ds.tasks.data import Example, TsvRow, pad, parse_label

THRESHOLD = 0.5  # UER-py's run_classifier_multi_label.py: a label is predicted when sigmoid(logit) > 0.5


class MultiLabelHead(ClassifierHead):
    """The classifier's layers with one sigmoid per label.  (B, T, H) -> logits (B, labels_num);
    tgt["label"]: (B, labels_num) of 0/1 (float)."""

    def forward(self, hidden: torch.Tensor, tgt: dict, seg: torch.Tensor) -> TargetResult:
        logits = self.logits(hidden, seg).float()  # (B, L)
        gold = tgt["label"].to(logits.dtype)
        loss = F.binary_cross_entropy_with_logits(logits, gold)
        exact = ((logits > 0) == (gold > 0.5)).all(dim=1)  # sigmoid(x) > 0.5  <=>  x > 0
        return TargetResult(loss=loss, correct=exact.sum(), denominator=torch.tensor(gold.shape[0],
                                                                                       device=logits.device))


def multi_label_metrics(gold: np.ndarray, predicted: np.ndarray) -> dict:
    """gold, predicted: (N, L) 0/1.  Micro (pooled over labels) and macro (mean over labels) precision,
    recall and F1; subset accuracy; per-label rows."""
    gold, predicted = gold.astype(bool), predicted.astype(bool)
    tp = (gold & predicted).sum(0).astype(np.float64)  # (L,)
    pred_n, gold_n = predicted.sum(0).astype(np.float64), gold.sum(0).astype(np.float64)

    def prf(t, p, g):
        precision = t / p if p else 0.0
        recall = t / g if g else 0.0
        return precision, recall, (2 * precision * recall / (precision + recall) if precision + recall else 0.0)

    per = [prf(t, p, g) for t, p, g in zip(tp, pred_n, gold_n)]
    micro = prf(tp.sum(), pred_n.sum(), gold_n.sum())
    return {"examples": int(len(gold)), "micro_f1": micro[2], "micro_precision": micro[0], "micro_recall": micro[1],
            "macro_f1": float(np.mean([r[2] for r in per])), "macro_precision": float(np.mean([r[0] for r in per])),
            "macro_recall": float(np.mean([r[1] for r in per])),
            "accuracy": float((gold == predicted).all(1).mean()) if len(gold) else 0.0,
            "per_class": [{"label": i, "precision": p, "recall": r, "f1": f, "support": int(g)}
                          for i, ((p, r, f), g) in enumerate(zip(per, gold_n))]}


@dataclass(frozen=True)
class MultiLabelOptions(ClassifierOptions):
    """multi_label_classifier: the classifier's files and label flags, and the probability threshold."""

    TITLE: ClassVar[str] = "multi-label classifier"
    FINETUNE: ClassVar[tuple[str, ...]] = ("train_path", "dev_path", "test_path", "label_path", "no_header",
                                           "threshold")
    INFER: ClassVar[tuple[str, ...]] = ("labels_num", "output_logits", "output_prob", "label_path", "no_header",
                                        "threshold")
    FINETUNE_DEFAULTS: ClassVar[dict[str, Any]] = {"threshold": THRESHOLD}
    INFER_DEFAULTS: ClassVar[dict[str, Any]] = {}
    FINETUNE_HELPS: ClassVar[dict[str, str]] = {
        "threshold": f"a label is predicted above this probability (default {THRESHOLD})"}
    INFER_HELPS: ClassVar[dict[str, str]] = dict(
        ClassifierOptions.INFER_HELPS, labels_num="labels; checked against the model (default: the model's)",
        output_prob="add a `prob` column (sigmoid per label)")

    threshold: Optional[float] = option("a label is predicted above this probability (default: the fine-tuning run's)",
                                        default=None)


class MultiLabelClassifierTask(ClassifierTask):
    name = "multi_label_classifier"
    uer_2020_output_path = None
    help = ("multi-label classification: comma-separated labels, a sigmoid per label, micro/macro F1 "
            "(UER-py run_classifier_multi_label)")
    metrics = ("micro_f1", "macro_f1", "accuracy")
    reads_models_of = ("multi_label_classifier",)

    options = MultiLabelOptions

    # ---- data -----------------------------------------------------------------------------------
    @staticmethod
    def parse_gold(row: TsvRow, labels_num: Optional[int], names: Optional[list[str]]) -> list[int]:
        """Sorted label ids of one row's comma-separated label column (empty: none)."""
        text = row.values["label"].strip()
        ids = []
        for part in (p.strip() for p in text.split(",")) if text else ():
            one = TsvRow(row.path, row.line, {"label": part})
            ids.append(parse_label(one, labels_num, names=names))
        if len(set(ids)) != len(ids):
            raise row.error(f"label '{text}' names a label twice")
        return sorted(ids)

    @staticmethod
    def count_labels(examples: list[Example]) -> int:
        return max((max(e.tgt) for e in examples if e.tgt), default=0) + 1

    def collate(self, examples: list[Example], head: int, pad_id: int) -> dict:
        tgt: dict[str, Any] = {"task": head}
        if examples[0].tgt is not None:
            labels_num = examples[0].extra["labels_num"]
            label = torch.zeros(len(examples), labels_num)
            for i, e in enumerate(examples):
                label[i, e.tgt] = 1.0
            tgt["label"] = label
        return {"src": pad([e.src for e in examples], pad_id), "seg": pad([e.seg for e in examples], 0), "tgt": tgt}

    def read(self, path: str, tokenizer, seq_length: int, spec: dict, labelled: bool,
             options: Optional[TaskOptions] = None) -> list[Example]:
        examples = super().read(path, tokenizer, seq_length, spec, labelled, options)
        for e in examples:  # collate needs the width of the 0/1 label rows
            e.extra["labels_num"] = spec.get("labels_num")
        return examples

    def label_spec(self, options: TaskOptions, cfg: ModelConfig) -> dict:
        spec = {k: v for k, v in super().label_spec(options, cfg).items() if k != "soft"}
        spec["threshold"] = self._threshold(options, {})
        return spec

    def load(self, options: TaskOptions, tokenizer, cfg: ModelConfig, seq_length: int):
        data = super().load(options, tokenizer, cfg, seq_length)
        labels_num = data.heads[self.name]["labels_num"]
        for split in (*data.train, *data.dev, *(t for t in data.test if t is not None)):
            for e in split:
                e.extra["labels_num"] = labels_num
        return data

    # ---- model ----------------------------------------------------------------------------------
    def build_heads(self, cfg: ModelConfig, heads: dict[str, dict],
                    options: Optional[TaskOptions] = None) -> dict[str, nn.Module]:
        if cfg.encoder == "dual":
            raise ValueError("the multi-label classifier takes one encoder; siamese (dual) models are not supported")
        return {name: MultiLabelHead(cfg, int(spec["labels_num"]), spec["pooling"],
                                     uer_pooling=bool(spec.get("uer_pooling"))) for name, spec in heads.items()}

    def uer_spec(self, options: TaskOptions, cfg: ModelConfig, head: dict[str, torch.Tensor], source: str) -> dict:
        spec = super().uer_spec(options, cfg, head, source)
        return {k: v for k, v in spec.items() if k != "soft"} | {"threshold": THRESHOLD}

    # ---- evaluation and output ------------------------------------------------------------------
    @staticmethod
    def _threshold(options: Optional[TaskOptions], spec: dict) -> float:
        """--threshold if given, else the one the model was fine-tuned with (spec), else UER-py's 0.5."""
        given = options.threshold if options is not None else None
        value = float(given if given is not None else spec.get("threshold", THRESHOLD))
        if not 0.0 < value < 1.0:
            raise ValueError(f"--threshold has value {value}: must be in (0, 1)")
        return value

    def _predicted(self, outputs: Sequence[Any], options, spec: dict) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.stack(outputs))) > self._threshold(options, spec)  # (N, L)

    def evaluate(self, examples: Sequence[Example], outputs: Sequence[Any], spec: dict,
                 options: TaskOptions) -> dict:
        gold = np.zeros((len(examples), int(spec["labels_num"])), dtype=bool)
        for i, e in enumerate(examples):
            gold[i, e.tgt] = True
        metrics = multi_label_metrics(gold, self._predicted(outputs, options, spec))
        names = spec.get("label_names")
        if names:
            for row in metrics["per_class"]:
                row["label"] = names[row["label"]]
        return metrics

    def format_report(self, metrics: dict, title: str) -> str:
        lines = [f"{title}: {metrics['examples']} examples  micro-F1 {metrics['micro_f1']:.4f}  macro-F1 "
                 f"{metrics['macro_f1']:.4f}  accuracy (all labels right) {metrics['accuracy']:.4f}",
                 f"  {'label':>5}  {'precision':>9}  {'recall':>6}  {'f1':>6}  {'support':>7}"]
        for c in metrics["per_class"]:
            lines.append(f"  {c['label']:>5}  {c['precision']:>9.4f}  {c['recall']:>6.4f}  {c['f1']:>6.4f}  "
                         f"{c['support']:>7}")
        return "\n".join(lines)

    def bad_cases(self, examples: Sequence[Example], outputs: Sequence[Any],
                  spec: dict) -> tuple[list[str], list[list[str]]]:
        texts = ["text_a", "text_b"] if spec.get("pair") else ["text_a"]
        name = label_namer(spec)
        predicted = self._predicted(outputs, None, spec)
        rows = []
        for example, row in zip(examples, predicted):
            pred = [int(i) for i in np.flatnonzero(row)]
            if pred != list(example.tgt):
                rows.append([example.source, ",".join(map(name, example.tgt)), ",".join(map(name, pred)),
                             *(example.text[t] for t in texts)])
        return ["source", "gold", "predicted", *texts], rows

    def write_predictions(self, handle, examples: Sequence[Example], outputs: Sequence[Any], spec: dict,
                          options: TaskOptions, header: bool) -> None:
        logits = np.stack(outputs)
        probs = 1.0 / (1.0 + np.exp(-logits))
        name = label_namer(spec)
        if header and not _headerless_output(options, spec):
            handle.write("\t".join(["label"] + (["logits"] if options.output_logits else [])
                                   + (["prob"] if options.output_prob else [])) + "\n")
        for row_logits, row_probs in zip(logits, probs):
            cells = [",".join(name(int(i)) for i in np.flatnonzero(row_probs > self._threshold(options, spec)))]
            if options.output_logits:
                cells.append(" ".join(f"{v:.6g}" for v in row_logits))
            if options.output_prob:
                cells.append(" ".join(f"{v:.6g}" for v in row_probs))
            handle.write("\t".join(cells) + "\n")


__all__ = ["MultiLabelClassifierTask", "MultiLabelOptions", "MultiLabelHead", "multi_label_metrics"]
