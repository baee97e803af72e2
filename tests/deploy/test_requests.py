"""The rules of a `POST /predict` body (uer_ds/deploy/requests.py) without a server: what is accepted and
how, and the rules only a pair model meets (the HTTP tests in test_serve.py cover the rest over the wire)."""
from __future__ import annotations

import pytest

from uer_ds.deploy.requests import Limits, RequestError, decode_json, parse_request

LIMITS = Limits(max_body_bytes=1000, max_texts=4, max_text_chars=20)


def test_accepted_bodies():
    one = parse_request(decode_json('{"text_a": "好书"}'.encode()), LIMITS, pair=False, labels_num=3)
    assert one.texts == [["好书"]] and not one.batch and one.top_k == 1 and not one.return_logits
    batch = parse_request({"text_a": ["a", "b"], "top_k": 3, "return_logits": True}, LIMITS, False, 3)
    assert batch.texts == [["a"], ["b"]] and batch.batch and batch.top_k == 3 and batch.return_logits
    pairs = parse_request({"text_a": ["q1", "q2"], "text_b": ["d1", "d2"]}, LIMITS, pair=True, labels_num=2)
    assert pairs.texts == [["q1", "d1"], ["q2", "d2"]]


@pytest.mark.parametrize("body, status, code, message", [
    ({"text_a": "q"}, 422, "missing_field", r"text_b is missing: the model classifies pairs"),
    ({"text_a": ["q1", "q2"], "text_b": ["d1"]}, 422, "length_mismatch", r"text_b has 1 texts, text_a 2"),
    ({"text_a": ["q1"], "text_b": "d1"}, 422, "wrong_type", r"text_b is a string but text_a is a list"),
    ({"text_a": "q", "text_b": ""}, 422, "empty_text", r"text_b is empty"),
    ({"text_a": "q", "text_b": ["d"] * 5}, 413, "too_many_texts", r"text_b has 5 texts: at most 4"),
])
def test_pair_rules(body, status, code, message):
    with pytest.raises(RequestError, match=message) as caught:
        parse_request(body, LIMITS, pair=True, labels_num=2)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert caught.value.body()["error"]["field"] == "text_b"


def test_limits_are_inclusive():
    assert parse_request({"text_a": ["x" * 20] * 4}, LIMITS, False, 2).texts == [["x" * 20]] * 4
    with pytest.raises(RequestError, match=r"text_a\[3\] has 21 characters: at most 20 per text"):
        parse_request({"text_a": ["x"] * 3 + ["x" * 21]}, LIMITS, False, 2)
