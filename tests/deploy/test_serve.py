"""`uer-ds serve` (issue 25 item 6): a real uvicorn process on a free loopback port, driven by a real
HTTP client (the standard library's http.client): its answers equal `uer-ds infer` on the same model
(PyTorch and ONNX), concurrent requests are batched together, 26 kinds of bad request each get a 4xx
JSON error naming the rule while the server goes on serving, and SIGTERM lets the requests in flight
finish before the process exits 0."""
from __future__ import annotations

import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from deploy_cases import NAMES, UER_DS, Server, finetune, make_data, read_texts
from conftest import ROOT

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from uer_ds.cli import main

    directory = tmp_path_factory.mktemp("serve")
    data = make_data(directory / "data")
    model = finetune(directory, data, epochs=2)
    onnx = directory / "model.onnx"
    assert main(["export", "onnx", "--load_model_path", str(model), "--output", str(onnx)]) == 0
    return {"data": data, "model": model, "onnx": onnx, "dir": directory}


@pytest.fixture(scope="module")
def server(trained):
    server = Server(trained["model"], "--max_wait_ms", "20", "--max_batch_size", "16", "--max_texts", "200",
                    "--max_text_chars", "500", "--max_body_bytes", "200000")
    yield server
    server.kill()


def infer(model, test_path, out):
    result = subprocess.run([*UER_DS, "infer", "classifier", "--load_model_path", str(model), "--test_path",
                             str(test_path), "--prediction_path", str(out), "--output_prob", "--no_progress"],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split("\t") for line in out.read_text(encoding="utf-8").splitlines()[1:]]
    return [r[0] for r in rows], np.array([[float(v) for v in r[1].split()] for r in rows])


def test_answers_equal_infer(server, trained, tmp_path):
    _, texts = read_texts(trained["data"]["dev"])
    labels, probs = infer(trained["model"], trained["data"]["dev"], tmp_path / "infer.tsv")
    answers = []
    for start in range(0, len(texts), 50):  # batches of 50 texts per request
        answers += server.predict({"text_a": texts[start: start + 50]})
    assert [a["label"] for a in answers] == labels
    assert [a["label_id"] for a in answers] == [NAMES.index(label) for label in labels]
    np.testing.assert_allclose([a["prob"] for a in answers], probs, atol=1e-5, rtol=0)
    single = server.predict({"text_a": texts[3], "top_k": 3, "return_logits": True})
    assert len(single) == 1 and single[0]["label"] == labels[3]
    assert [k["prob"] for k in single[0]["top_k"]] == sorted(single[0]["prob"], reverse=True)
    assert single[0]["top_k"][0]["label"] == labels[3] and len(single[0]["logits"]) == 3


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server, trained):
    _, texts = read_texts(trained["data"]["dev"])
    texts = texts[:48]
    alone = server.predict({"text_a": texts})
    before = server.request("GET", "/health")[1]
    barrier = threading.Barrier(24)

    def one(i):
        barrier.wait()
        return server.predict({"text_a": [texts[2 * i], texts[2 * i + 1]]})

    with ThreadPoolExecutor(24) as pool:
        answers = [a for pair in pool.map(one, range(24)) for a in pair]
    after = server.request("GET", "/health")[1]
    assert after["requests"] - before["requests"] == 24 and after["texts"] - before["texts"] == 48
    batches = after["batches"] - before["batches"]
    assert batches < 24, f"{batches} forwards for 24 concurrent requests: no batching"
    # (the batches' sizes, at most --max_batch_size, are test_batcher.py's business)
    assert [a["label"] for a in answers] == [a["label"] for a in alone]
    np.testing.assert_allclose([a["prob"] for a in answers], [a["prob"] for a in alone], atol=1e-5, rtol=0)


def test_health_metadata_and_openapi(server, trained):
    status, meta, _ = server.request("GET", "/metadata")
    assert status == 200 and meta["labels"] == NAMES and meta["task"] == "classifier" and meta["kind"] == "task"
    assert meta["pair"] is False and meta["batching"] == {"max_batch_size": 16, "max_wait_ms": 20.0}
    assert meta["limits"] == {"max_body_bytes": 200000, "max_texts": 200, "max_text_chars": 500}
    status, schema, _ = server.request("GET", "/openapi.json")
    assert status == 200 and {"/predict", "/health", "/metadata"} <= set(schema["paths"])
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["text_a"]
    status, page, _ = server.request("GET", "/docs")
    assert status == 200 and "swagger" in page.lower()


def _chunks(size):
    for _ in range(size // 1000):
        yield b" " * 1000


BAD = [  # (what, method, path, body, headers, status, code, words in the message)
    ("not JSON", "POST", "/predict", b"{text_a: 1}", None, 400, "invalid_json", "line 1 column 2"),
    ("truncated JSON", "POST", "/predict", b'{"text_a": "x"', None, 400, "invalid_json", "not JSON"),
    ("NaN", "POST", "/predict", b'{"text_a": "x", "top_k": NaN}', None, 400, "invalid_json", "NaN"),
    ("deep nesting", "POST", "/predict", b"[" * 100000 + b"]" * 100000, None, 400, "invalid_json", "nested"),
    ("invalid UTF-8", "POST", "/predict", b'{"text_a": "\xff\xfe"}', None, 400, "invalid_utf8",
     "byte 0xff at offset 12"),
    ("empty body", "POST", "/predict", b"", None, 400, "empty_body", "empty"),
    ("not an object", "POST", "/predict", ["a"], None, 400, "not_an_object", "a list"),
    ("unknown field", "POST", "/predict", {"text": "x"}, None, 422, "unknown_field", "unknown field 'text'"),
    ("missing text_a", "POST", "/predict", {}, None, 422, "missing_field", "text_a is missing"),
    ("text_a a number", "POST", "/predict", {"text_a": 5}, None, 422, "wrong_type", "text_a is a number"),
    ("text_a null", "POST", "/predict", {"text_a": None}, None, 422, "wrong_type", "text_a is null"),
    ("a number in the list", "POST", "/predict", {"text_a": ["ok", 3]}, None, 422, "wrong_type", "text_a[1]"),
    ("empty text", "POST", "/predict", {"text_a": ""}, None, 422, "empty_text", "text_a is empty"),
    ("white space", "POST", "/predict", {"text_a": ["ok", " \t\n"]}, None, 422, "empty_text", "only white space"),
    ("empty list", "POST", "/predict", {"text_a": []}, None, 422, "empty_batch", "empty list"),
    ("too many texts", "POST", "/predict", {"text_a": ["x"] * 201}, None, 413, "too_many_texts", "at most 200"),
    ("oversized text", "POST", "/predict", {"text_a": "好" * 501}, None, 422, "text_too_long", "501 characters"),
    ("lone surrogate", "POST", "/predict", b'{"text_a": "ok \\ud800"}', None, 422, "invalid_text", "U+D800"),
    ("text_b for a single-text model", "POST", "/predict", {"text_a": "x", "text_b": "y"}, None, 422,
     "unexpected_field", "single texts"),
    ("top_k a string", "POST", "/predict", {"text_a": "x", "top_k": "2"}, None, 422, "wrong_type", "top_k is a string"),
    ("top_k a boolean", "POST", "/predict", {"text_a": "x", "top_k": True}, None, 422, "wrong_type", "an integer"),
    ("top_k out of range", "POST", "/predict", {"text_a": "x", "top_k": 4}, None, 422, "out_of_range", "[1, 3]"),
    ("return_logits not a boolean", "POST", "/predict", {"text_a": "x", "return_logits": "yes"}, None, 422,
     "wrong_type", "true or false"),
    ("not application/json", "POST", "/predict", b'{"text_a": "x"}', {"Content-Type": "text/plain"}, 415,
     "unsupported_media_type", "text/plain"),
    ("body too large", "POST", "/predict", {"text_a": ["好" * 400] * 200}, None, 413, "body_too_large",
     "at most 200000"),
    ("chunked body too large", "POST", "/predict", "chunks", {"Content-Type": "application/json"}, 413,
     "body_too_large", "more than 200000"),
    ("unknown path", "GET", "/nothing", None, None, 404, "not_found", "/nothing"),
    ("wrong method", "GET", "/predict", None, None, 405, "method_not_allowed", "GET /predict"),
]


@pytest.mark.parametrize("what, method, path, body, headers, status, code, words", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_a_json_4xx_and_the_server_goes_on(server, what, method, path, body, headers, status, code,
                                                            words):
    if body == "chunks":
        body = _chunks(201000)
    if isinstance(body, bytes) and headers is None:
        headers = {"Content-Type": "application/json"}
    got, answer, _ = server.request(method, path, body, headers)
    assert got == status, answer
    assert answer["error"]["code"] == code and answer["error"]["status"] == status
    assert words in answer["error"]["message"], answer
    assert server.predict({"text_a": "这本书很好看"})[0]["label"] in NAMES  # still serving


def test_onnx_model_serves_the_same_answers(trained, server):
    _, texts = read_texts(trained["data"]["test"])
    onnx = Server(trained["onnx"], "--max_wait_ms", "5")
    try:
        assert onnx.request("GET", "/metadata")[1]["kind"] == "onnx"
        theirs = onnx.predict({"text_a": texts[:100], "top_k": 2})
    finally:
        code, out = onnx.stop()
    ours = server.predict({"text_a": texts[:100], "top_k": 2})
    assert [a["label"] for a in theirs] == [a["label"] for a in ours]
    np.testing.assert_allclose([a["prob"] for a in theirs], [a["prob"] for a in ours], atol=1e-5, rtol=0)
    assert code == 0, out


def test_sigterm_lets_requests_in_flight_finish(trained):
    """Requests waiting in a batch (a 1.5 s --max_wait_ms) when SIGTERM arrives are answered, then the
    process exits 0 and says what it served."""
    slow = Server(trained["model"], "--max_wait_ms", "1500", "--max_batch_size", "64")
    try:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(slow.request, "POST", "/predict", {"text_a": f"第{i}本书很好看"})
                       for i in range(4)]
            time.sleep(0.5)  # the requests are in, waiting for the batch
            slow.process.send_signal(signal.SIGTERM)
            answers = [f.result(timeout=60) for f in futures]
        out, _ = slow.process.communicate(timeout=60)
    finally:
        slow.kill()
    assert [a[0] for a in answers] == [200] * 4
    assert all(a[1]["predictions"][0]["label"] in NAMES for a in answers)
    assert slow.process.returncode == 0, out
    assert "stopped after" in out and "4 request(s), 4 text(s) in 1 batch(es)" in out
