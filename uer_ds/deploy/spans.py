"""What `uer-ds serve` answers for a tagger (NER) and a span reader (MRC, CMRC-style): the request body's
rules, the examples the task's own reader would build, and the spans in characters of the request's text.

NER  body {"text_a": "..." | [...]}; the text's words are its characters but white space (`--ner_words
     char`, the layout of UER-py's Chinese NER files: "张 三" and "张三" are the same two words) or its
     white-space-separated runs (`space`); each word is one token of the task's text_a, so the tags equal
     what `uer-ds infer ner` writes for the line " ".join(words).
     answer {"entities": [{"type", "start", "end", "text"}], "words": [...], "tags": [...], "truncated": n}:
     entities are the chunks of the predicted tags (uer_ds.tasks.scoring.get_entities, seqeval's rules),
     start/end their character offsets in text_a ([start, end), Python string indices: text_a[start:end]
     == text); words past --seq_length are tagged O (truncated counts them).
MRC  body {"question": ..., "context": ...} (or text_a = question, text_b = context, as the task puts them in
     segments 1 and 2), strings or equal-length lists.
     answer {"text", "start", "end", "score"}: the best span over the context's windows as `uer-ds infer
     cmrc` decodes it (uer_ds.tasks.mrc: start logit + end logit), text == context[start:end]; when no
     window has a valid span, text "" and start, end, score null.
Errors are uer_ds.deploy.requests.RequestError (a JSON 4xx), as for the classifier.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from uer_ds.deploy.predictor import Predictor
from uer_ds.deploy.requests import TEXTS_SCHEMA, Limits, RequestError, _kind, _texts
from uer_ds.tasks.data import Example

NER_WORDS = ("char", "space")


@dataclass
class SpanRequest:
    """items: NER: one text each; MRC: (question, context) each; batch: the texts came as lists."""

    items: list
    batch: bool


def _check_fields(payload: Any, fields: Sequence[str]) -> dict:
    if not isinstance(payload, dict):
        raise RequestError(400, "not_an_object", f"the body is {_kind(payload)}: must be a JSON object such as "
                                                 f'{{"{fields[0]}": "..."}}')
    unknown = [k for k in payload if k not in fields]
    if unknown:
        raise RequestError(422, "unknown_field", f"unknown field '{unknown[0]}': the fields are {', '.join(fields)}",
                           unknown[0])
    return payload


def words_of(text: str, mode: str) -> list[tuple[str, int, int]]:
    """(word, start, end) of each word of `text` (text[start:end] == word): every character but white space
    (mode "char") or each run of non-white-space characters ("space")."""
    if mode == "char":
        return [(c, i, i + 1) for i, c in enumerate(text) if not c.isspace()]
    if mode == "space":
        return [(m.group(), *m.span()) for m in re.finditer(r"\S+", text)]
    raise ValueError(f"--ner_words has value '{mode}': must be one of {', '.join(NER_WORDS)}")


class NerService:
    """A tagger's requests and answers (see the module's docstring)."""

    fields = ("text_a",)

    def __init__(self, predictor: Predictor, words: str = "char") -> None:
        words_of("", words)  # the mode's check
        self.predictor, self.words = predictor, words
        self.labels = list(predictor.spec["labels"])

    def parse(self, payload: Any, limits: Limits) -> SpanRequest:
        payload = _check_fields(payload, self.fields)
        if "text_a" not in payload:
            raise RequestError(422, "missing_field", "text_a is missing: the text (or list of texts) to tag", "text_a")
        texts, batch = _texts(payload["text_a"], "text_a", limits)
        return SpanRequest(texts, batch)

    def examples(self, request: SpanRequest) -> list[Example]:
        """One example per text, as NerTask.read builds the line " ".join(words)."""
        from uer_ds.tasks.ner import tagging_example

        p = self.predictor
        return [tagging_example(f"<request>[{i}]", text, [w for w, _, _ in words_of(text, self.words)], p.tokenizer,
                                p.seq_length) for i, text in enumerate(request.items)]

    def answers(self, request: SpanRequest, examples: Sequence[Example], outputs: Sequence[Any]) -> list[dict]:
        from uer_ds.tasks.ner import NerTask
        from uer_ds.tasks.scoring import get_entities

        out = []
        for text, example, output in zip(request.items, examples, outputs):
            words = words_of(text, self.words)
            tags = NerTask.predicted_tags(example, output, self.labels)
            entities = []
            for kind, first, last in get_entities(tags):
                start, end = words[first][1], words[last][2]
                entities.append({"type": kind, "start": start, "end": end, "text": text[start:end]})
            out.append({"entities": entities, "words": [w for w, _, _ in words], "tags": tags,
                        "truncated": len(words) - len(example.extra["first"])})
        return out

    def metadata(self) -> dict:
        return {"labels": self.labels, "ner_words": self.words}

    def describe(self) -> str:
        return f"{len(self.labels)} tags, words: {self.words}"

    @staticmethod
    def openapi_body() -> dict:
        schema = {"type": "object", "required": ["text_a"], "additionalProperties": False,
                  "properties": {"text_a": dict(TEXTS_SCHEMA, description="a text or a list of texts to tag")}}
        return {"schema": schema, "example": {"text_a": ["中国人民银行在北京", "张三去了上海"]}}


class MrcService:
    """A span reader's requests and answers (see the module's docstring)."""

    fields = ("question", "context", "text_a", "text_b")

    def __init__(self, predictor: Predictor) -> None:
        from uer_ds.tasks.mrc import require_offsets

        require_offsets(predictor.tokenizer)
        self.predictor = predictor

    def parse(self, payload: Any, limits: Limits) -> SpanRequest:
        payload = _check_fields(payload, self.fields)
        pairs = []
        for name, alias, what in (("question", "text_a", "the question"), ("context", "text_b", "the passage")):
            if name in payload and alias in payload:
                raise RequestError(422, "duplicate_field", f"{name} and {alias} were both given: {alias} is another "
                                                           f"name for {name} ({what}); give one", alias)
            field = name if name in payload else alias
            if field not in payload:
                raise RequestError(422, "missing_field", f"{name} is missing: {what} (a string, or a list of them)",
                                   name)
            pairs.append((field, *_texts(payload[field], field, limits)))
        (qf, questions, q_batch), (cf, contexts, c_batch) = pairs
        if q_batch != c_batch:
            raise RequestError(422, "wrong_type", f"{cf} is {'a list' if c_batch else 'a string'} but {qf} is "
                                                  f"{'a list' if q_batch else 'a string'}: give both alike", cf)
        if len(questions) != len(contexts):
            raise RequestError(422, "length_mismatch", f"{cf} has {len(contexts)} texts, {qf} {len(questions)}: one "
                                                       f"{cf} per {qf}", cf)
        return SpanRequest(list(zip(questions, contexts)), q_batch)

    def examples(self, request: SpanRequest) -> list[Example]:
        """Each question's windows over its context, as CmrcTask.read builds them (question ids "0", "1", ...)."""
        from uer_ds.tasks.mrc import question_windows, tokenize_with_offsets

        p = self.predictor
        out = []
        for i, (question, context) in enumerate(request.items):
            item = {"id": str(i), "question": question, "context": context, "answers": [], "moved": 0}
            try:
                out += question_windows(item, p.tokenizer, tokenize_with_offsets(p.tokenizer, context), p.seq_length,
                                        p.spec, int(p.spec["doc_stride"]), path="<request>")
            except ValueError as err:
                raise RequestError(422, "cannot_encode", f"question {i}: {err}", "question") from None
        return out

    def answers(self, request: SpanRequest, examples: Sequence[Example], outputs: Sequence[Any]) -> list[dict]:
        from uer_ds.tasks.mrc import CmrcTask

        spans = CmrcTask.answer_spans(examples, outputs, self.predictor.spec, None)
        out = []
        for i in range(len(request.items)):
            text, score, start, end = spans[str(i)]
            found = start >= 0
            out.append({"text": text, "start": start if found else None, "end": end if found else None,
                        "score": score if found else None})
        return out

    def metadata(self) -> dict:
        spec = self.predictor.spec
        return {key: spec.get(key) for key in ("doc_stride", "max_query_length", "max_answer_length", "n_best_size")}

    def describe(self) -> str:
        return f"doc_stride {self.predictor.spec.get('doc_stride')}"

    @staticmethod
    def openapi_body() -> dict:
        schema = {"type": "object", "additionalProperties": False,
                  "properties": {"question": dict(TEXTS_SCHEMA, description="the question (or text_a)"),
                                 "context": dict(TEXTS_SCHEMA, description="the passage (or text_b), shaped as question"),
                                 "text_a": dict(TEXTS_SCHEMA, description="another name for question"),
                                 "text_b": dict(TEXTS_SCHEMA, description="another name for context")}}
        return {"schema": schema, "example": {"question": "《战国无双3》是由哪两个公司合作开发的？",
                                              "context": "《战国无双3》是由光荣和ω-force开发的战国无双系列的正统第三续作。"}}


__all__ = ["MrcService", "NER_WORDS", "NerService", "SpanRequest", "words_of"]
