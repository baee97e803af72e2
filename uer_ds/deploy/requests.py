"""The body of a `POST /predict` request to `uer-ds serve`, checked rule by rule (no web framework here).

A body is one JSON object, UTF-8:
  text_a         a text, or a list of texts (a batch)                         required
  text_b         the same shape as text_a: the second text of each pair        pair models only
  top_k          an int in [1, labels_num]: the k best labels with their probabilities   default 1
  return_logits  a bool: add each text's logits                                 default false
Every violation is a RequestError: an HTTP status (400 the body is not a JSON object, 413 too large,
422 a field breaks a rule), a stable code, the field, and a message naming the value and the rule.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

FIELDS = ("text_a", "text_b", "top_k", "return_logits")
# the OpenAPI schema of a text field: a string, or a list of them (a batch)
TEXTS_SCHEMA = {"anyOf": [{"type": "string", "minLength": 1}, {"type": "array", "items": {"type": "string"},
                                                               "minItems": 1}]}


class RequestError(Exception):
    """A bad request: `status` (4xx), `code` (machine-readable), `field` (or None), `message`."""

    def __init__(self, status: int, code: str, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field

    def body(self) -> dict:
        """The JSON error body the server answers with."""
        error = {"status": self.status, "code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


@dataclass(frozen=True)
class Limits:
    """max_body_bytes: the request body; max_texts: texts (pairs) in one request; max_text_chars: one text."""

    max_body_bytes: int = 1 << 20
    max_texts: int = 256
    max_text_chars: int = 10000


@dataclass
class PredictRequest:
    """texts: one [text_a] or [text_a, text_b] per example; batch: text_a was a list (the answer is a
    list then too)."""

    texts: list[list[str]]
    batch: bool
    top_k: int = 1
    return_logits: bool = False


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def decode_json(body: bytes) -> Any:
    """bytes -> a JSON value; RequestError 400 for an empty body, bytes that are not UTF-8, text that is not
    JSON (NaN and Infinity included) or nests too deeply."""
    if not body.strip():
        raise RequestError(400, "empty_body", "the request body is empty: send a JSON object such as "
                                              '{"text_a": "..."}')
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RequestError(400, "invalid_utf8", f"the body is not UTF-8: byte 0x{body[err.start]:02x} at offset "
                                                f"{err.start} ({err.reason})") from None
    try:
        return json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as err:
        raise RequestError(400, "invalid_json", f"the body is not JSON: {err.msg} at line {err.lineno} column "
                                                f"{err.colno}") from None
    except ValueError as err:
        raise RequestError(400, "invalid_json", f"the body is not JSON: {err}") from None
    except RecursionError:
        raise RequestError(400, "invalid_json", "the body is not JSON this server reads: nested too deeply") from None


def _text(value: Any, field: str, limits: Limits) -> str:
    if not isinstance(value, str):
        raise RequestError(422, "wrong_type", f"{field} is {_kind(value)}: must be a string", field)
    if not value.strip():
        raise RequestError(422, "empty_text", f"{field} is {'empty' if not value else 'only white space'}: every "
                                              "example needs text", field)
    if len(value) > limits.max_text_chars:
        raise RequestError(422, "text_too_long", f"{field} has {len(value)} characters: at most "
                                                 f"{limits.max_text_chars} per text", field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        surrogate = f"U+{ord(value[err.start]):04X}"
        raise RequestError(422, "invalid_text", f"{field} is not valid Unicode: a lone surrogate {surrogate} at "
                                                f"character {err.start}", field) from None
    return value


def _texts(value: Any, field: str, limits: Limits) -> tuple[list[str], bool]:
    """(texts, given as a list) of text_a or text_b."""
    if isinstance(value, list):
        if not value:
            raise RequestError(422, "empty_batch", f"{field} is an empty list: give at least one text", field)
        if len(value) > limits.max_texts:
            raise RequestError(413, "too_many_texts", f"{field} has {len(value)} texts: at most {limits.max_texts} "
                                                      "per request", field)
        return [_text(v, f"{field}[{i}]", limits) for i, v in enumerate(value)], True
    if isinstance(value, str):
        return [_text(value, field, limits)], False
    raise RequestError(422, "wrong_type", f"{field} is {_kind(value)}: must be a string or a list of strings", field)


def _kind(value: Any) -> str:
    names = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string",
             list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def parse_request(payload: Any, limits: Limits, pair: bool, labels_num: int) -> PredictRequest:
    """A decoded JSON body (decode_json's) -> PredictRequest for a model of `labels_num` classes that reads
    pairs (`pair`) or single texts; RequestError naming the field, its value and the rule otherwise."""
    if not isinstance(payload, dict):
        raise RequestError(400, "not_an_object", f"the body is {_kind(payload)}: must be a JSON object such as "
                                                 '{"text_a": "..."}')
    unknown = [k for k in payload if k not in FIELDS]
    if unknown:
        raise RequestError(422, "unknown_field", f"unknown field '{unknown[0]}': the fields are {', '.join(FIELDS)}",
                           unknown[0])
    if "text_a" not in payload:
        raise RequestError(422, "missing_field", "text_a is missing: the text (or list of texts) to classify",
                           "text_a")
    texts_a, batch = _texts(payload["text_a"], "text_a", limits)
    groups = [[t] for t in texts_a]
    if pair and "text_b" not in payload:
        raise RequestError(422, "missing_field", "text_b is missing: the model classifies pairs (text_a, text_b)",
                           "text_b")
    if not pair and "text_b" in payload:
        raise RequestError(422, "unexpected_field", "text_b was given, but the model classifies single texts "
                                                    "(text_a only)", "text_b")
    if pair:
        texts_b, batch_b = _texts(payload["text_b"], "text_b", limits)
        if batch_b != batch:
            raise RequestError(422, "wrong_type", f"text_b is {'a list' if batch_b else 'a string'} but text_a is "
                                                  f"{'a list' if batch else 'a string'}: give both alike", "text_b")
        if len(texts_b) != len(texts_a):
            raise RequestError(422, "length_mismatch", f"text_b has {len(texts_b)} texts, text_a {len(texts_a)}: one "
                                                       "text_b per text_a", "text_b")
        groups = [[a, b] for a, b in zip(texts_a, texts_b)]
    top_k = payload.get("top_k", 1)
    if not isinstance(top_k, int) or isinstance(top_k, bool):
        raise RequestError(422, "wrong_type", f"top_k is {_kind(top_k)}: must be an integer", "top_k")
    if not 1 <= top_k <= labels_num:
        raise RequestError(422, "out_of_range", f"top_k is {top_k}: must be in [1, {labels_num}] (the model's "
                                                "labels)", "top_k")
    logits = payload.get("return_logits", False)
    if not isinstance(logits, bool):
        raise RequestError(422, "wrong_type", f"return_logits is {_kind(logits)}: must be true or false",
                           "return_logits")
    return PredictRequest(groups, batch, top_k, logits)


__all__ = ["FIELDS", "Limits", "TEXTS_SCHEMA", "PredictRequest", "RequestError", "decode_json", "parse_request"]
