"""Span-extraction machine reading comprehension on SQuAD-style JSON (CMRC2018, DRCD; UER-py's
run_cmrc / run_cmrc_infer).

Data: {"data": [{"paragraphs": [{"context": str, "qas": [{"id", "question", "answers": [{"text",
"answer_start"}]}]}]}]}.  answer_start is the answer's character offset in the context, -1 when it
does not occur there.  An answer_start that does not point at its text (CMRC2018's dev set has some
off by a few characters) gives way to the text's nearest occurrence; an answer the context lacks
counts as a gold text for EM/F1 but teaches no span.  The load report counts both.

Input windows: [CLS] question [SEP] context window [SEP] (segments 1 and 2).  A context longer than
the room left by the question (at most --max_query_length tokens) is cut into windows that start
--doc_stride tokens apart.  The context's tokens are the tokenizer's own (`encode_with_offsets`: the
ids pre-training saw for that text), and each keeps the character span the tokenizer says it came
from, so a token span maps back to the exact context text; a tokenizer that cannot give spans is
refused.  Training labels the answer's first and last token in a
window that holds the whole answer, and [CLS] (position 0) in a window that does not, as BERT's
SQuAD code does.

Decoding: in each window the --n_best_size best start and end positions over the context tokens,
pairs with end >= start and at most --max_answer_length tokens, scored start logit + end logit; the
question's answer is its best-scoring pair over all windows.  EM/F1 by the CMRC2018 rules
(uer_ds.tasks.scoring).  `uer-ds infer cmrc` writes {question id: answer} as JSON.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Sequence

import numpy as np
import torch
from torch import nn

from uer_ds import textfile
from uer_ds.config import ModelConfig
from uer_ds.config.options import add_option_arguments, option
from uer_ds.models.targets import TargetResult
from uer_ds.models.targets.base import classification_result
from uer_ds.tasks.base import SplitOptions, Task, TaskData, TaskOptions
from uer_ds.tasks.data import Example, TaskDataError, pad, task_file_error
from uer_ds.tasks.ner import note
from uer_ds.tasks.scoring import cmrc_f1, cmrc_metrics
from uer_ds.tokenizers import TOKENIZERS, Tokenizer
from uer_ds.tokenizers.base import gives_offsets

PAD_LOGIT = -10000.0  # score of padding positions (finite: fp16/bf16 safe, never a best position)


# ---- the head ------------------------------------------------------------------------------------
class SpanHead(nn.Module):
    """(B, T, H) -> start and end logits (B, T) by one linear layer (hidden -> 2).
    tgt: "start", "end" (B,) positions (0 = [CLS]: the window does not hold the answer)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.output_layer = nn.Linear(cfg.hidden_size, 2)

    def logits(self, hidden: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = self.output_layer(hidden).float().unbind(dim=-1)  # (B, T) each
        padding = seg == 0
        return start.masked_fill(padding, PAD_LOGIT), end.masked_fill(padding, PAD_LOGIT)

    def forward(self, hidden: torch.Tensor, tgt: dict, seg: torch.Tensor) -> TargetResult:
        start, end = self.logits(hidden, seg)
        first, last = classification_result(start, tgt["start"]), classification_result(end, tgt["end"])
        both = ((start.argmax(-1) == tgt["start"]) & (end.argmax(-1) == tgt["end"])).sum()
        return TargetResult(loss=(first.loss + last.loss) / 2, correct=both, denominator=first.denominator)

    def predict(self, hidden: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.logits(hidden, seg)

    onnx_outputs = ("start_logits", "end_logits")  # ONNX export (uer_ds.tasks.onnx)

    def export_outputs(self, hidden: torch.Tensor, seg: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"start_logits", "end_logits"}: (B, T) fp32 each, as predict returns them."""
        start, end = self.logits(hidden, seg)
        return {"start_logits": start, "end_logits": end}

    def host_state(self) -> dict:
        return {}


# ---- tokens with character offsets ---------------------------------------------------------------
def require_offsets(tokenizer: Tokenizer) -> None:
    """Reading comprehension maps answers between characters and tokens: refuse a tokenizer that
    cannot give each token's character span (see Tokenizer.encode_with_offsets)."""
    if not gives_offsets(tokenizer):
        able = [kind for kind, cls in TOKENIZERS.items() if gives_offsets(cls)]
        raise ValueError(f"--tokenizer {tokenizer.kind}: reading comprehension needs each token's character offsets "
                         f"in the context, which this tokenizer cannot give; use one that can ({', '.join(able)})")


def tokenize_with_offsets(tokenizer: Tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of text, equal to tokenizer.encode(text) (and so to what pre-training saw), and each
    token's character span [start, end) in text, from the tokenizer itself."""
    require_offsets(tokenizer)
    return tokenizer.encode_with_offsets(text)


def char_span_to_tokens(offsets: Sequence[tuple[int, int]], start: int, end: int) -> Optional[tuple[int, int]]:
    """First and last token overlapping characters [start, end); None when no token does."""
    inside = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
    return (inside[0], inside[-1]) if inside else None


def window_starts(length: int, room: int, stride: int) -> list[int]:
    """Token offsets of the windows over a context of `length` tokens, `room` tokens each."""
    starts = [0]
    while starts[-1] + room < length:
        starts.append(starts[-1] + min(stride, room))
    return starts


# ---- reading the JSON ----------------------------------------------------------------------------
def load_json(path: str) -> Any:
    """A task's JSON data file (uer_ds.textfile.load_json: a BOM is accepted); errors as TaskDataError."""
    try:
        return textfile.load_json(path, "data file")
    except textfile.TextFileError as err:
        raise task_file_error(err) from None


def _field(obj: Any, key: str, kind: type, where: str, rule: str) -> Any:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TaskDataError(f"{where}: '{key}' is {value!r:.80}: {rule}")
    return value


def read_squad(path: str, labelled: bool) -> list[dict]:
    """Questions [{id, question, context, answers: [(text, start)]}] of a SQuAD-style file, checked."""
    data = load_json(path)
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list):
        raise TaskDataError(f"{path}: top level must be an object with a 'data' list (SQuAD format)")
    questions, seen = [], set()
    for a, article in enumerate(articles):
        paragraphs = _field(article, "paragraphs", list, f"{path}: data[{a}]", "each article has a 'paragraphs' list")
        for p, paragraph in enumerate(paragraphs):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            context = _field(paragraph, "context", str, where, "each paragraph has a non-empty 'context' string")
            if not context.strip():
                raise TaskDataError(f"{where}: 'context' is empty: each paragraph needs text")
            for q, qa in enumerate(_field(paragraph, "qas", list, where, "each paragraph has a 'qas' list")):
                questions.append(_read_question(qa, context, path, f"{where}.qas[{q}]", labelled, seen))
    if not questions:
        raise TaskDataError(f"{path}: no questions")
    return questions


def _read_question(qa: Any, context: str, path: str, where: str, labelled: bool, seen: set) -> dict:
    qid = qa.get("id") if isinstance(qa, dict) else None
    if not isinstance(qid, (str, int)) or isinstance(qid, bool) or str(qid) == "":
        raise TaskDataError(f"{where}: 'id' is {qid!r:.80}: every question needs an id (string)")
    qid = str(qid)
    where = f"{path}: question id {qid}"
    if qid in seen:
        raise TaskDataError(f"{where}: the id occurs twice: question ids must be unique")
    seen.add(qid)
    question = _field(qa, "question", str, where, "each question has a non-empty 'question' string")
    if not question.strip():
        raise TaskDataError(f"{where}: 'question' is empty")
    answers, moved = [], 0
    if labelled:
        items = _field(qa, "answers", list, where, "a labelled question has an 'answers' list")
        if not items:
            raise TaskDataError(f"{where}: 'answers' is empty: a labelled question needs at least one answer")
        for k, item in enumerate(items):
            text = _field(item, "text", str, f"{where} answer {k}", "an answer has a 'text' string")
            if not text.strip():
                raise TaskDataError(f"{where} answer {k}: 'text' is empty: an answer needs text")
            start = _field(item, "answer_start", int, f"{where} answer {k}",
                           "an answer has an integer 'answer_start' (-1: not in the context)")
            if start < -1:
                raise TaskDataError(f"{where} answer {k}: answer_start is {start}: it is the answer's character "
                                    "offset in the context (>= 0), or -1 when the answer does not occur there")
            located = locate(context, text, start)
            moved += located != start
            answers.append((text, located))
    return {"id": qid, "question": question, "context": context, "answers": answers, "moved": moved}


def locate(context: str, text: str, start: int) -> int:
    """answer_start when the text is there; else the text's occurrence nearest to it (CMRC2018's dev
    set has offsets off by a few characters, and -1 for answers that may still occur); -1 if none."""
    if start >= 0 and context[start: start + len(text)] == text:
        return start
    found, position = -1, context.find(text)
    while position != -1:
        if found == -1 or abs(position - start) < abs(found - start):
            found = position
        position = context.find(text, position + 1)
    return found


# ---- the task ------------------------------------------------------------------------------------
def best_span(start: np.ndarray, end: np.ndarray, first: int, count: int, n_best: int,
              max_length: int) -> Optional[tuple[float, int, int]]:
    """(score, s, e) of the best pair among the n_best starts and n_best ends in positions
    [first, first + count): e >= s, e - s + 1 <= max_length, score start[s] + end[e]."""
    window_start, window_end = start[first: first + count], end[first: first + count]
    starts = np.argsort(-window_start, kind="stable")[:n_best]
    ends = np.argsort(-window_end, kind="stable")[:n_best]
    best = None
    for s in starts:
        for e in ends:
            if e < s or e - s + 1 > max_length:
                continue
            score = float(window_start[s]) + float(window_end[e])
            if best is None or score > best[0]:
                best = (score, first + int(s), first + int(e))
    return best


@dataclass(frozen=True)
class CmrcOptions(SplitOptions):
    """cmrc: windows over long contexts, answer decoding, and at inference the select-then-extract flow."""

    TITLE: ClassVar[str] = "cmrc"
    FINETUNE: ClassVar[tuple[str, ...]] = ("train_path", "dev_path", "test_path", "doc_stride", "max_query_length",
                                           "max_answer_length", "n_best_size")
    INFER: ClassVar[tuple[str, ...]] = ("doc_stride", "max_answer_length", "n_best_size")
    SELECT: ClassVar[tuple[str, ...]] = ("select_model_path", "selection_path")
    # fine-tuning gives defaults; inference defaults to the values the model was fine-tuned with
    FINETUNE_DEFAULTS: ClassVar[dict[str, Any]] = {"doc_stride": 128, "max_answer_length": 64, "n_best_size": 20}
    FINETUNE_HELPS: ClassVar[dict[str, str]] = {
        "doc_stride": "tokens between the starts of a long context's windows (default 128)",
        "max_answer_length": "longest answer in tokens (default 64)",
        "n_best_size": "start and end candidates per window (default 20)"}
    INFER_HELPS: ClassVar[dict[str, str]] = {
        "max_answer_length": "longest answer in tokens (default the model's)",
        "n_best_size": "start and end candidates per window (default the model's)"}

    doc_stride: Optional[int] = option(
        "tokens between the starts of a long context's windows (default: the model's, from fine-tuning; UER-py's "
        "run_cmrc_infer.py takes it too)", default=None)
    max_query_length: int = option("longest question in tokens; longer is cut (default 64)", default=64)
    max_answer_length: Optional[int] = option("longest answer in tokens", default=None)
    n_best_size: Optional[int] = option("start and end candidates per window", default=None)
    select_model_path: Optional[str] = option(
        "a c3 task model that picks each question's paragraph among its candidates; then --test_path is C3's JSON "
        "with the paragraphs as options, [[], [{id, question, choice: [paragraphs]}], id], and the answer is "
        "extracted from the chosen one", default=None)
    selection_path: Optional[str] = option(
        "with --select_model_path: JSON lines {id, paragraph (chosen index), scores}", default=None)


def question_windows(question: dict, tokenizer: Tokenizer, tokenized: tuple[list[int], list], seq_length: int,
                     spec: dict, stride: int, located: Optional[tuple[int, int]] = None,
                     path: Optional[str] = None) -> list[Example]:
    """The input windows of one question {id, question, context, answers} (read_squad's) whose context is
    `tokenized` (tokenize_with_offsets(tokenizer, context)): [CLS] question (at most spec's
    max_query_length tokens) [SEP] window [SEP], windows `stride` tokens apart; what `uer-ds infer cmrc`
    and `uer-ds serve` predict on.  ValueError when seq_length leaves no room for the context."""
    ids, offsets = tokenized
    query = tokenizer.encode(question["question"])[: spec["max_query_length"]]
    room = seq_length - len(query) - 3
    if room < 1:
        raise ValueError(f"--seq_length {seq_length} leaves no room for the context after a question of "
                         f"{len(query)} tokens (--max_query_length {spec['max_query_length']})")
    special = tokenizer.require_special("cls", "sep")
    return CmrcTask._windows(question, ids, offsets, query, room, stride, special, located, path)


class CmrcTask(Task):
    name = "cmrc"
    uer_2020_output_path = "models/cmrc_model.bin"
    help = "span-extraction reading comprehension on SQuAD-style JSON (CMRC2018, DRCD; UER-py run_cmrc)"
    metrics = ("f1", "em", "average")

    options = CmrcOptions

    def add_infer_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The cmrc group, then the select-then-extract flow's flags in their own group."""
        super().add_infer_arguments(parser)
        every = {f.name for f in dataclasses.fields(CmrcOptions)}
        add_option_arguments(parser.add_argument_group("select a paragraph, then extract (uer_ds.recipes.select_extract)"),
                             CmrcOptions, exclude=tuple(every - set(CmrcOptions.SELECT)))

    # ---- data -----------------------------------------------------------------------------------
    def read(self, path: str, tokenizer: Tokenizer, seq_length: int, spec: dict, labelled: bool,
             options: Optional[TaskOptions] = None) -> list[Example]:
        training = labelled and options is not None  # the training file: questions without a located answer are skipped
        require_offsets(tokenizer)
        stride = options.doc_stride if options is not None else None  # infer's --doc_stride, else the model's
        stride = spec["doc_stride"] if stride is None else stride
        if stride <= 0:
            raise ValueError(f"--doc_stride has value {stride}: must be positive")
        examples, skipped, lost, contexts, moved = [], [], [], {}, []
        for question in read_squad(path, labelled):
            moved += [question["id"]] * question["moved"]
            context = question["context"]
            if context not in contexts:  # paragraphs' questions share one tokenization
                contexts.clear()
                contexts[context] = tokenize_with_offsets(tokenizer, context)
            ids, offsets = contexts[context]
            spans = [char_span_to_tokens(offsets, s, s + len(t)) if s >= 0 else None for t, s in question["answers"]]
            located = next((span for span in spans if span is not None), None)
            if training and located is None:
                skipped.append(question["id"])
                continue
            windows = question_windows(question, tokenizer, (ids, offsets), seq_length, spec, stride, located,
                                       path if labelled else None)
            lost += [question["id"]] * (labelled and not self._recoverable(question, windows, offsets, spans))
            examples.extend(windows)
        if moved:
            some = ", ".join(list(dict.fromkeys(moved))[:3])
            note(f"{path}: {len(moved)} answer(s) not at their answer_start: taken from the nearest occurrence of their "
                 f"text, or, where the context lacks it, used as gold text only (e.g. {some})")
        if skipped:
            note(f"{path}: {len(skipped)} question(s) skipped for training: no answer occurs in the "
                 f"context (e.g. {', '.join(skipped[:3])})")
        if lost:
            note(f"{path}: {len(lost)} question(s) with a gold answer that no window's tokens give back exactly "
                 f"(an answer boundary inside a token, or an answer that no window holds whole: a smaller --doc_stride "
                 f"makes windows overlap more; e.g. {', '.join(lost[:3])})")
        if not examples:
            raise TaskDataError(f"{path}: no question has a usable answer")
        return examples

    @staticmethod
    def _windows(question: dict, ids: list[int], offsets: list, query: list[int], room: int, stride: int,
                 special: dict, located: Optional[tuple[int, int]], path: Optional[str]) -> list[Example]:
        """The windows of one question; `located`: the answer's first and last context token (training
        targets), None without one."""
        out = []
        prefix = [special["cls"], *query, special["sep"]]
        for w, begin in enumerate(window_starts(len(ids), room, stride)):
            stop = min(begin + room, len(ids))
            src = prefix + ids[begin:stop] + [special["sep"]]
            seg = [1] * len(prefix) + [2] * (stop - begin + 1)
            target = None
            if located is not None:
                inside = begin <= located[0] and located[1] < stop
                target = (len(prefix) + located[0] - begin, len(prefix) + located[1] - begin) if inside else (0, 0)
            out.append(Example(f"{path or 'input'}: question id {question['id']} window {w}",
                               {"id": question["id"], "question": question["question"], "context": question["context"]},
                               src, seg, target,
                               {"first": len(prefix), "begin": begin, "offsets": offsets[begin:stop],
                                "answers": [t for t, _ in question["answers"]]}))
        return out

    @staticmethod
    def _recoverable(question: dict, windows: list[Example], offsets: list, spans: list) -> bool:
        """Does every located gold answer come back exactly (but for surrounding whitespace, which no
        token holds) as the context text of a token span that lies whole inside some window?"""
        for (text, start), span in zip(question["answers"], spans):
            if start < 0:
                continue
            if span is None or question["context"][offsets[span[0]][0]: offsets[span[1]][1]] != text.strip():
                return False
            if not any(w.extra["begin"] <= span[0] and span[1] < w.extra["begin"] + len(w.extra["offsets"])
                       for w in windows):
                return False
        return True

    def load(self, options: TaskOptions, tokenizer: Tokenizer, cfg: ModelConfig, seq_length: int) -> TaskData:
        for key in ("doc_stride", "max_query_length", "max_answer_length", "n_best_size"):
            if getattr(options, key) <= 0:
                raise ValueError(f"--{key} has value {getattr(options, key)}: must be positive")
        spec = {"doc_stride": options.doc_stride, "max_query_length": options.max_query_length,
                "max_answer_length": options.max_answer_length, "n_best_size": options.n_best_size}
        train = self.read(options.train_path, tokenizer, seq_length, spec, True, options)
        read = lambda path: self.read(path, tokenizer, seq_length, spec, True)  # noqa: E731
        return TaskData({"cmrc": spec}, [train], [read(options.dev_path)],
                        [read(options.test_path) if options.test_path else None])

    def onnx_predict(self, spec: dict, outputs: dict[str, torch.Tensor], batch: dict,
                     host: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(start, end) logits (B, T) each, as SpanHead.predict returns them."""
        return outputs["start_logits"], outputs["end_logits"]

    def collate(self, examples: list[Example], head: int, pad_id: int) -> dict:
        tgt: dict[str, Any] = {"task": head}
        if all(e.tgt is not None for e in examples):
            tgt["start"] = torch.tensor([e.tgt[0] for e in examples], dtype=torch.long)
            tgt["end"] = torch.tensor([e.tgt[1] for e in examples], dtype=torch.long)
        return {"src": pad([e.src for e in examples], pad_id), "seg": pad([e.seg for e in examples], 0), "tgt": tgt}

    # ---- model ----------------------------------------------------------------------------------
    def build_heads(self, cfg: ModelConfig, heads: dict[str, dict],
                    options: Optional[TaskOptions] = None) -> dict[str, nn.Module]:
        if cfg.encoder == "dual":
            raise ValueError("reading comprehension takes one encoder; siamese (dual) models are not supported")
        return {name: SpanHead(cfg) for name in heads}

    # ---- evaluation and output ------------------------------------------------------------------
    @staticmethod
    def answers(examples: Sequence[Example], outputs: Sequence[Any], spec: dict,
                options: Optional[TaskOptions]) -> dict[str, tuple[str, float]]:
        """{question id: (answer text, score)} in file order: the best span over the question's windows."""
        spans = CmrcTask.answer_spans(examples, outputs, spec, options)
        return {qid: (text, score) for qid, (text, score, _, _) in spans.items()}

    @staticmethod
    def answer_spans(examples: Sequence[Example], outputs: Sequence[Any], spec: dict,
                     options: Optional[TaskOptions]) -> dict[str, tuple[str, float, int, int]]:
        """{question id: (answer text, score, start, end)} in file order: the best span over the question's
        windows, score = start logit + end logit (float32 logits summed in float64), [start, end) its
        characters in the context; ("", -inf, -1, -1) when no window has a valid span."""
        n_best = (options.n_best_size if options is not None else None) or spec["n_best_size"]
        max_length = (options.max_answer_length if options is not None else None) or spec["max_answer_length"]
        for key, value in (("n_best_size", n_best), ("max_answer_length", max_length)):
            if value <= 0:
                raise ValueError(f"--{key} has value {value}: must be positive")
        best: dict[str, tuple[float, str, int, int]] = {}
        for example, (start, end) in zip(examples, outputs):
            qid = example.text["id"]
            offsets = example.extra["offsets"]
            found = best_span(start, end, example.extra["first"], len(offsets), n_best, max_length)
            best.setdefault(qid, (float("-inf"), "", -1, -1))
            if found is not None and found[0] > best[qid][0]:
                a, b = offsets[found[1] - example.extra["first"]][0], offsets[found[2] - example.extra["first"]][1]
                best[qid] = (found[0], example.text["context"][a:b], a, b)
        return {qid: (text, score, a, b) for qid, (score, text, a, b) in best.items()}

    @staticmethod
    def _golds(examples: Sequence[Example]) -> dict[str, list[str]]:
        return {e.text["id"]: e.extra["answers"] for e in examples}

    def evaluate(self, examples: Sequence[Example], outputs: Sequence[Any], spec: dict,
                 options: TaskOptions) -> dict:
        predicted = self.answers(examples, outputs, spec, options)
        golds = self._golds(examples)
        metrics = cmrc_metrics([golds[q] for q in predicted], [text for text, _ in predicted.values()])
        metrics["windows"] = len(examples)
        return metrics

    def format_report(self, metrics: dict, title: str) -> str:
        return (f"{title}: {metrics['questions']} questions ({metrics['windows']} windows)  F1 {metrics['f1']:.4f}  "
                f"EM {metrics['em']:.4f}  average {metrics['average']:.4f}")

    def bad_cases(self, examples: Sequence[Example], outputs: Sequence[Any],
                  spec: dict) -> tuple[list[str], list[list[str]]]:
        predicted = self.answers(examples, outputs, spec, None)
        golds = self._golds(examples)
        questions = {e.text["id"]: e.text["question"] for e in examples}
        rows = []
        for qid, (text, _) in predicted.items():
            f1 = cmrc_f1(golds[qid], text)
            if f1 < 1.0:
                rows.append([qid, questions[qid], " | ".join(golds[qid]), text, f"{f1:.4f}"])
        return ["id", "question", "gold", "predicted", "f1"], rows

    def write_prediction_file(self, handle, examples: Sequence[Example], outputs: Sequence[Any], spec: dict,
                              options: TaskOptions, chunk: int = 4096) -> None:
        answers = {qid: text for qid, (text, _) in self.answers(examples, outputs, spec, options).items()}
        handle.write(json.dumps(answers, ensure_ascii=False, indent=2) + "\n")


__all__ = ["CmrcTask", "SpanHead",
           "best_span", "char_span_to_tokens", "question_windows", "read_squad", "require_offsets",
           "tokenize_with_offsets", "window_starts"]
