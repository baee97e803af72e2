"""Multiple choice (C3; UER-py's run_c3 / run_c3_infer).

Data: C3's JSON, a list of documents [[context sentences...], [{"question", "choice": [options...],
"answer": option text (labelled), "id" (optional)}, ...], document id (optional)].  A question's id
is its "id", else "<document id>-<question index>" (or "<document index>-<question index>"), with
"@<document index>" added where a document id repeats (C3's dev set has such).

Each option is one input, [CLS] option [SEP] question [SEP] context [SEP] (segment 1 up to the
question's [SEP], then 2), the context cut to fit --seq_length; the head scores each input's pooled
hidden state and a softmax over the question's options picks the answer.  Questions have 2 to any
number of options: a batch holds max-options rows per question, the missing ones are stand-in
inputs ([CLS] [SEP]) whose scores are masked out (tgt "choice_mask").  Metric: accuracy.
`uer-ds infer c3` writes JSON lines {"id", "label"} (label: the chosen option's index).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Sequence

import numpy as np
import torch
from torch import nn

from uer_ds.config import POOLINGS, ModelConfig
from uer_ds.config.options import option
from uer_ds.models.targets import TargetResult
from uer_ds.models.targets.base import classification_result
from uer_ds.tasks.base import SplitOptions, Task, TaskData, TaskOptions
from uer_ds.tasks.classifier import ClassifierHead
from uer_ds.tasks.data import Example, TaskDataError, pad
from uer_ds.tasks.metrics import classification_metrics
from uer_ds.tasks.mrc import load_json
from uer_ds.tokenizers import Tokenizer

MASKED_SCORE = -10000.0  # score of a stand-in option (finite: safe in fp16/bf16 and in softmax)


class ChoiceHead(ClassifierHead):
    """The classifier's layers with one output: (B * C, T, H) -> one score per option -> (B, C).
    tgt: "choice_mask" (B, C) bool (always given), "label" (B,) the right option (training)."""

    predict_takes_tgt = True

    def __init__(self, cfg: ModelConfig, pooling: str) -> None:
        super().__init__(cfg, 1, pooling)

    def scores(self, hidden: torch.Tensor, seg: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.logits(hidden, seg).float().view(mask.shape)  # (B * C, 1) -> (B, C)
        return scores.masked_fill(~mask, MASKED_SCORE)

    def forward(self, hidden: torch.Tensor, tgt: dict, seg: torch.Tensor) -> TargetResult:
        return classification_result(self.scores(hidden, seg, tgt["choice_mask"]), tgt["label"])

    def predict(self, hidden: torch.Tensor, seg: torch.Tensor, tgt: dict) -> torch.Tensor:
        return self.scores(hidden, seg, tgt["choice_mask"])


def read_c3(path: str, labelled: bool) -> list[dict]:
    """[{id, context, question, choices, answer index or None, where}] of a C3 file, checked."""
    data = load_json(path)
    if not isinstance(data, list) or not data:
        raise TaskDataError(f"{path}: top level must be a non-empty list of documents [context, questions, id]")
    out, seen = [], set()
    for d, document in enumerate(data):
        where = f"{path}: document {d}"
        if not isinstance(document, list) or len(document) not in (2, 3):
            raise TaskDataError(f"{where}: must be a list [context sentences, questions(, id)]")
        sentences, questions = document[0], document[1]
        strings = isinstance(sentences, list) and all(isinstance(s, str) for s in sentences)
        if not strings or (sentences and not "".join(sentences).strip()):  # [] : no context (paragraph selection)
            raise TaskDataError(f"{where}: the context must be a list of strings with text (or [] for none: "
                                "the options carry the text, as in paragraph selection)")
        if not isinstance(questions, list) or not questions:
            raise TaskDataError(f"{where}: the questions must be a non-empty list")
        doc_id = str(document[2]) if len(document) == 3 else str(d)
        for q, item in enumerate(questions):
            given = isinstance(item, dict) and "id" in item
            qid = str(item["id"]) if given else f"{doc_id}-{q}"
            if qid in seen and not given:  # C3's dev set repeats some document ids: tell them apart
                qid = f"{qid}@{d}"
            here = f"{where} question id {qid}"
            if qid in seen:
                raise TaskDataError(f"{here}: the id occurs twice: question ids must be unique")
            seen.add(qid)
            out.append(_read_question(item, here, qid, "\n".join(sentences), labelled))
    return out


def _read_question(item: Any, where: str, qid: str, context: str, labelled: bool) -> dict:
    if not isinstance(item, dict):
        raise TaskDataError(f"{where}: a question is an object {{question, choice, answer}}")
    question, choices = item.get("question"), item.get("choice")
    if not isinstance(question, str) or not question.strip():
        raise TaskDataError(f"{where}: 'question' is {question!r:.60}: a non-empty string is needed")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c.strip() for c in choices):
        raise TaskDataError(f"{where}: 'choice' is {choices!r:.80}: a list of at least 2 non-empty option strings")
    answer = None
    if labelled:
        text = item.get("answer")
        if text not in choices:
            raise TaskDataError(f"{where}: 'answer' {text!r:.60} is not one of the options {choices}: the answer is "
                                "the text of the right option")
        answer = choices.index(text)
    return {"id": qid, "context": context, "question": question, "choices": choices, "answer": answer,
            "where": where}


def encode_choice(tokenizer: Tokenizer, option: list[int], question: list[int], context: list[int],
                  seq_length: int) -> tuple[list[int], list[int]]:
    """[CLS] option [SEP] question [SEP] context [SEP], the context cut first, then the rest; without a
    context (paragraph selection: the options are the paragraphs) [CLS] option [SEP] question [SEP]."""
    special = tokenizer.require_special("cls", "sep")
    first = [special["cls"], *option, special["sep"], *question, special["sep"]][: seq_length - (1 if context else 0)]
    room = max(seq_length - len(first) - 1, 0)
    src = first + context[:room] + [special["sep"]] if context else first
    return src, [1] * len(first) + [2] * (len(src) - len(first))


@dataclass(frozen=True)
class C3Options(SplitOptions):
    """c3: the three files, and UER-py's padded option count."""

    TOP: ClassVar[tuple[str, ...]] = ("train_path", "dev_path", "test_path", "max_choices_num")
    FINETUNE: ClassVar[tuple[str, ...]] = ("train_path", "dev_path", "test_path", "max_choices_num")
    INFER: ClassVar[tuple[str, ...]] = ("max_choices_num",)

    max_choices_num: Optional[int] = option(
        "UER-py's padded option count: checked as the most options a question may have (uer_ds pads each batch to "
        "its own most)", default=None)


class C3Task(Task):
    name = "c3"
    uer_2020_output_path = "models/multichoice_model.bin"
    help = "multiple choice: context + question + each option, softmax over the options (C3; UER-py run_c3)"
    metrics = ("accuracy",)

    options = C3Options

    def read(self, path: str, tokenizer: Tokenizer, seq_length: int, spec: dict, labelled: bool,
             options: Optional[TaskOptions] = None) -> list[Example]:
        examples, contexts = [], {}
        most = options.max_choices_num if options is not None else None
        for q in read_c3(path, labelled):
            if most is not None and len(q["choices"]) > most:
                raise ValueError(f"{q['where']}: {len(q['choices'])} options, more than --max_choices_num {most}")
            if q["context"] not in contexts:
                contexts = {q["context"]: tokenizer.encode(q["context"])}
            context, question = contexts[q["context"]], tokenizer.encode(q["question"])
            pairs = [encode_choice(tokenizer, tokenizer.encode(c), question, context, seq_length) for c in q["choices"]]
            examples.append(Example(q["where"], {"id": q["id"], "question": q["question"]},
                                    [p[0] for p in pairs], [p[1] for p in pairs], q["answer"],
                                    {"choices": q["choices"]}))
        return examples

    def load(self, options: TaskOptions, tokenizer: Tokenizer, cfg: ModelConfig, seq_length: int) -> TaskData:
        spec = {"pooling": cfg.pooling}
        read = lambda path: self.read(path, tokenizer, seq_length, spec, True, options)  # noqa: E731
        return TaskData({"c3": spec}, [read(options.train_path)], [read(options.dev_path)],
                        [read(options.test_path) if options.test_path else None])

    def collate(self, examples: list[Example], head: int, pad_id: int) -> dict:
        """src, seg: (B * C, T), question-major; tgt "choice_mask": (B, C)."""
        width = max(len(e.src) for e in examples)
        stand_in = [[e.src[0][0], e.src[0][-1]] for e in examples]  # [CLS] [SEP]
        src, seg = [], []
        for e, filler in zip(examples, stand_in):
            src += e.src + [filler] * (width - len(e.src))
            seg += e.seg + [[1, 1]] * (width - len(e.src))
        mask = torch.tensor([[k < len(e.src) for k in range(width)] for e in examples])
        tgt: dict[str, Any] = {"task": head, "choice_mask": mask}
        if examples[0].tgt is not None:
            tgt["label"] = torch.tensor([e.tgt for e in examples], dtype=torch.long)
        return {"src": pad(src, pad_id), "seg": pad(seg, 0), "tgt": tgt}

    def build_heads(self, cfg: ModelConfig, heads: dict[str, dict],
                    options: Optional[TaskOptions] = None) -> dict[str, nn.Module]:
        if cfg.encoder == "dual":
            raise ValueError("multiple choice takes one encoder; siamese (dual) models are not supported")
        for name, spec in heads.items():
            if spec["pooling"] not in POOLINGS:
                raise ValueError(f"head '{name}': pooling '{spec['pooling']}' must be one of {', '.join(POOLINGS)}")
        return {name: ChoiceHead(cfg, spec["pooling"]) for name, spec in heads.items()}

    # ---- evaluation and output ------------------------------------------------------------------
    @staticmethod
    def _scores(examples: Sequence[Example], outputs: Sequence[Any]) -> np.ndarray:
        """(N, most options) scores; a question's missing options score MASKED_SCORE."""
        width = max(len(e.src) for e in examples)
        table = np.full((len(examples), width), MASKED_SCORE, dtype=np.float64)
        for i, (e, out) in enumerate(zip(examples, outputs)):
            table[i, : len(e.src)] = out[: len(e.src)]
        return table

    def evaluate(self, examples: Sequence[Example], outputs: Sequence[Any], spec: dict,
                 options: TaskOptions) -> dict:
        gold = np.array([e.tgt for e in examples], dtype=np.int64)
        metrics = classification_metrics(gold, self._scores(examples, outputs))
        counts = [len(e.src) for e in examples]
        return {"questions": metrics["examples"], "accuracy": metrics["accuracy"],
                "options": {str(n): counts.count(n) for n in sorted(set(counts))}}

    def format_report(self, metrics: dict, title: str) -> str:
        counts = ", ".join(f"{n} options: {c}" for n, c in metrics["options"].items())
        return f"{title}: {metrics['questions']} questions ({counts})  accuracy {metrics['accuracy']:.4f}"

    def bad_cases(self, examples: Sequence[Example], outputs: Sequence[Any],
                  spec: dict) -> tuple[list[str], list[list[str]]]:
        rows = []
        for e, pred in zip(examples, self._scores(examples, outputs).argmax(axis=1)):
            if pred != e.tgt:
                choices = e.extra["choices"]
                rows.append([e.text["id"], e.text["question"], choices[e.tgt], choices[pred], " | ".join(choices)])
        return ["id", "question", "gold", "predicted", "choices"], rows

    def write_predictions(self, handle, examples: Sequence[Example], outputs: Sequence[Any], spec: dict,
                          options: TaskOptions, header: bool) -> None:
        for e, pred in zip(examples, self._scores(examples, outputs).argmax(axis=1)):
            handle.write(json.dumps({"id": e.text["id"], "label": int(pred)}, ensure_ascii=False) + "\n")


__all__ = ["C3Task", "ChoiceHead", "encode_choice", "read_c3"]
