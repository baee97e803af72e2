"""Sentence and sentence-pair regression (GLUE's STS-B: a real-valued score per text or pair).

Data: the classifier's TSV (`label<TAB>text_a[<TAB>text_b]`, a header row, or --no_header with the label
last), the label a real number.  The head is the classifier's (pooling -> linear -> tanh -> linear) with
one output; the loss is the mean squared error; dev and test report Pearson and Spearman correlation
(GLUE's STS-B metrics; `--metric` chooses which selects the best model) with MSE and MAE beside them;
`uer-ds infer regression` writes a `score` column.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Sequence

import numpy as np
import torch
from torch import nn

from uer_ds.config import POOLINGS, ModelConfig
from uer_ds.models.targets import TargetResult
from uer_ds.models.targets.base import IGNORE_INDEX
from uer_ds.tasks.base import TaskData, TaskOptions
from uer_ds.tasks.classifier import ClassifierHead, ClassifierOptions, ClassifierTask
from uer_ds.tasks.data import Example, pad, strip_blank
from uer_ds.tasks.metrics import format_regression, regression_metrics
from uer_ds.tokenizers import Tokenizer


def regression_result(scores: torch.Tensor, labels: torch.Tensor) -> TargetResult:
    """Mean squared error over rows whose label is not IGNORE_INDEX.  scores: (N,), labels: (N,) float.
    correct is 0 (a regression has no right or wrong); denominator counts the labelled rows."""
    keep = labels != IGNORE_INDEX
    count = keep.sum()
    squared = torch.where(keep, (scores.float() - labels.float()) ** 2, torch.zeros_like(scores, dtype=torch.float32))
    return TargetResult(loss=squared.sum() / count.clamp(min=1), correct=torch.zeros_like(count), denominator=count)


class RegressionHead(ClassifierHead):
    """The classifier head with one output: (B, T, H) -> scores (B,)."""

    def __init__(self, cfg: ModelConfig, pooling: str) -> None:
        super().__init__(cfg, 1, pooling)

    def forward(self, hidden: torch.Tensor, tgt: dict, seg: torch.Tensor) -> TargetResult:
        """tgt: {"label": (B,) float}."""
        return regression_result(self.logits(hidden, seg).squeeze(-1), tgt["label"])

    def predict(self, hidden: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:  # -> (B,)
        return self.logits(hidden, seg).squeeze(-1)


@dataclass(frozen=True)
class RegressionOptions(ClassifierOptions):
    """regression: the three files and --no_header."""

    TITLE: ClassVar[str] = "regression"
    FINETUNE: ClassVar[tuple[str, ...]] = ("train_path", "dev_path", "test_path", "no_header")
    INFER: ClassVar[tuple[str, ...]] = ("no_header",)
    FINETUNE_DEFAULTS: ClassVar[dict[str, Any]] = {}
    INFER_DEFAULTS: ClassVar[dict[str, Any]] = {}
    FINETUNE_HELPS: ClassVar[dict[str, str]] = {
        "no_header": "files without a header row, columns text_a[<TAB>text_b]<TAB>label"}
    INFER_HELPS: ClassVar[dict[str, str]] = {
        "no_header": "input without a header row (default: as the model was fine-tuned)"}


class RegressionTask(ClassifierTask):
    name = "regression"
    uer_2020_output_path = None
    help = "sentence / sentence-pair regression, e.g. GLUE's STS-B (MSE loss; Pearson / Spearman)"
    metrics = ("pearson", "spearman")
    reads_models_of = ("regression",)
    uer_head = None

    options = RegressionOptions

    def check_infer_flags(self, options: TaskOptions, spec: dict, source: str) -> None:
        pass

    def uer_spec(self, options: TaskOptions, cfg: ModelConfig, head: dict[str, torch.Tensor], source: str) -> dict:
        raise ValueError(f"{source}: UER-py has no regression fine-tuning; load a model fine-tuned by "
                         "`uer-ds finetune regression`")

    # ---- data -----------------------------------------------------------------------------------
    @staticmethod
    def parse_gold(row, labels_num: Optional[int], names: Optional[list[str]]) -> float:
        text = strip_blank(row.values["label"])
        try:
            value = float(text)
        except ValueError:
            raise row.error(f"label '{text}' is not a number (regression labels are real values)") from None
        if not math.isfinite(value):
            raise row.error(f"label '{text}' is not finite")
        return value

    def label_spec(self, options: TaskOptions, cfg: ModelConfig) -> dict:
        if options.labels_num not in (None, 1):
            raise ValueError(f"--labels_num has value {options.labels_num}: a regression head has one output")
        spec = {"labels_num": 1, "pooling": cfg.pooling, "soft": False, "regression": True}
        if options.no_header:
            spec["no_header"] = True
        return spec

    def load(self, options: TaskOptions, tokenizer: Tokenizer, cfg: ModelConfig, seq_length: int) -> TaskData:
        spec = self.label_spec(options, cfg)
        train = self.read(options.train_path, tokenizer, seq_length, spec, True, options)
        spec["pair"] = "text_b" in train[0].text
        dev = self.read(options.dev_path, tokenizer, seq_length, spec, True, options)
        test = self.read(options.test_path, tokenizer, seq_length, spec, True, options) if options.test_path else None
        return TaskData({self.name: spec}, [train], [dev], [test])

    def collate(self, examples: list[Example], head: int, pad_id: int) -> dict:
        tgt: dict[str, Any] = {"task": head}
        if examples[0].tgt is not None:
            tgt["label"] = torch.tensor([e.tgt for e in examples], dtype=torch.float32)
        return {"src": pad([e.src for e in examples], pad_id), "seg": pad([e.seg for e in examples], 0), "tgt": tgt}

    # ---- model ----------------------------------------------------------------------------------
    def build_heads(self, cfg: ModelConfig, heads: dict[str, dict],
                    options: Optional[TaskOptions] = None) -> dict[str, nn.Module]:
        out = {}
        for name, spec in heads.items():
            if spec["pooling"] not in POOLINGS:
                raise ValueError(f"head '{name}': pooling '{spec['pooling']}' must be one of {', '.join(POOLINGS)}")
            out[name] = RegressionHead(cfg, spec["pooling"])
        return out

    # ---- evaluation and output ------------------------------------------------------------------
    def evaluate(self, examples: Sequence[Example], outputs: Sequence[Any], spec: dict,
                 options: TaskOptions) -> dict:
        return regression_metrics(np.array([e.tgt for e in examples], dtype=np.float64),
                                  np.array(outputs, dtype=np.float64))

    def format_report(self, metrics: dict, title: str) -> str:
        return format_regression(metrics, title)

    def bad_cases(self, examples: Sequence[Example], outputs: Sequence[Any],
                  spec: dict, limit: int = 100) -> tuple[list[str], list[list[str]]]:
        """The `limit` examples with the largest absolute error, largest first."""
        texts = ["text_a", "text_b"] if spec.get("pair") else ["text_a"]
        errors = [(abs(float(out) - e.tgt), e, float(out)) for e, out in zip(examples, outputs)]
        errors.sort(key=lambda item: -item[0])
        rows = [[e.source, f"{e.tgt:.6g}", f"{pred:.6g}", f"{err:.6g}", *(e.text[t] for t in texts)]
                for err, e, pred in errors[:limit]]
        return ["source", "gold", "predicted", "abs_error", *texts], rows

    def write_predictions(self, handle, examples: Sequence[Example], outputs: Sequence[Any], spec: dict,
                          options: TaskOptions, header: bool) -> None:
        if header and not (spec.get("no_header") if options.no_header is None else options.no_header):
            handle.write("score\n")
        for out in outputs:
            handle.write(f"{float(out):.6g}\n")


__all__ = ["RegressionHead", "RegressionOptions", "RegressionTask", "regression_result"]
