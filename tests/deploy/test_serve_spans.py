"""`uer-ds serve` for an NER tagger and a CMRC span reader: a real uvicorn process on a loopback port, a real
HTTP client.  Tiny models fine-tuned for a few steps on the shared test data (msra_ner, cmrc); the served
spans equal what `uer-ds infer` writes for the same model and inputs (NER: the tags, and the entities
equal seqeval's extraction on those tags, mapped to character offsets; MRC: the answer text, which is
context[start:end]); concurrent requests are batched; bad requests get a JSON 4xx."""
from __future__ import annotations

import json
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ROOT, shared
from deploy_cases import UER_DS, Server, run_job

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
seqeval = pytest.importorskip("seqeval.metrics.sequence_labeling")

TINY = ["--config_path", "bert/tiny", "--report_steps", "50", "--no_progress"]


def finetune(args):
    result = run_job([*UER_DS, "finetune", *args], timeout=400)
    assert result.returncode == 0, result.stdout[-3000:]


def infer(args):
    result = subprocess.run([*UER_DS, "infer", *args, "--no_progress"], capture_output=True, text=True, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def rows(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


@pytest.fixture(scope="module")
def vocab():
    return str(shared("models/google_zh_vocab.txt"))


@pytest.fixture(scope="module")
def ner(tmp_path_factory, vocab):
    data = shared("datasets/test_data/msra_ner")
    out = tmp_path_factory.mktemp("ner") / "model"
    # four steps over the 50 dev sentences: the tags are still nearly those of random weights, so many
    # entities of every kind come out (what the spans are checked on); their quality does not matter here
    finetune(["ner", "--vocab_path", vocab, *TINY, "--learning_rate", "1e-4", "--seq_length", "64", "--batch_size",
              "16", "--epochs_num", "1", "--label2id_path", str(shared("datasets/msra_ner/label2id.json")),
              "--train_path", str(data / "dev.tsv"), "--dev_path", str(data / "dev.tsv"),
              "--output_model_path", str(out), "--seed", "3"])
    server = Server(out, "--max_wait_ms", "20", "--max_batch_size", "8", "--max_text_chars", "400")
    yield {"model": out, "data": data, "server": server}
    server.kill()


@pytest.fixture(scope="module")
def cmrc(tmp_path_factory, vocab):
    data = shared("datasets/test_data/cmrc")
    out = tmp_path_factory.mktemp("cmrc") / "model"
    finetune(["cmrc", "--vocab_path", vocab, *TINY, "--learning_rate", "1e-3", "--seq_length", "96", "--doc_stride",
              "48", "--max_answer_length", "40", "--batch_size", "16", "--epochs_num", "1", "--train_path",
              str(data / "train.json"), "--dev_path", str(data / "dev.json"), "--output_model_path", str(out),
              "--seed", "3"])
    server = Server(out, "--max_wait_ms", "20", "--max_batch_size", "4")
    yield {"model": out, "data": data, "server": server}
    server.kill()


def expected_entities(text, spans, tags):
    """seqeval's chunks of `tags`, mapped from word indices to character offsets by the words' (start, end)."""
    out = []
    for kind, first, last in seqeval.get_entities(tags):
        a, b = spans[first][0], spans[last][1]
        out.append({"type": kind, "start": a, "end": b, "text": text[a:b]})
    return out


def test_ner_spans_equal_infer_and_seqeval(ner, tmp_path):
    # char mode: the words of "我们变..." are its characters, as the file's line "我 们 变 ..." has them; the
    # lines whose tokens are all one character each go to the server without their spaces
    lines = [r["text_a"] for r in rows(ner["data"] / "test.tsv") if all(len(t) == 1 for t in r["text_a"].split(" "))]
    assert len(lines) > 30
    (tmp_path / "in.tsv").write_text("text_a\n" + "\n".join(lines) + "\n", encoding="utf-8")
    infer(["ner", "--load_model_path", str(ner["model"]), "--test_path", str(tmp_path / "in.tsv"),
           "--prediction_path", str(tmp_path / "tags.tsv")])
    inferred = [r["label"].split(" ") for r in rows(tmp_path / "tags.tsv")]
    texts = [line.replace(" ", "") for line in lines]
    answers = []
    for start in range(0, len(texts), 16):
        answers += ner["server"].predict({"text_a": texts[start: start + 16]})
    assert [a["tags"] for a in answers] == inferred
    assert sum(len(a["entities"]) for a in answers) > 0  # so the comparison below compares something
    for text, answer, tags in zip(texts, answers, inferred):
        # [CLS] + one piece per character + [SEP] within --seq_length 64: the words past 62 are tagged O
        assert answer["words"] == list(text) and answer["truncated"] == max(0, len(text) - 62)
        assert answer["entities"] == expected_entities(text, [(i, i + 1) for i in range(len(text))], tags)
    # white space inside a text is not a word: the offsets still point into the text as sent
    spaced = "  " + texts[0][:5] + " \u3000" + texts[0][5:]
    answer = ner["server"].predict({"text_a": spaced})[0]
    spans = [(i, i + 1) for i, c in enumerate(spaced) if not c.isspace()]
    assert answer["entities"] == expected_entities(spaced, spans, answer["tags"])
    assert all(spaced[e["start"]: e["end"]] == e["text"] for e in answer["entities"])


def test_ner_space_words_and_truncation(ner, tmp_path):
    server = Server(ner["model"], "--ner_words", "space", "--seq_length", "12")
    try:
        lines = [r["text_a"] for r in rows(ner["data"] / "test.tsv")]
        infer(["ner", "--load_model_path", str(ner["model"]), "--test_path", str(ner["data"] / "test.tsv"),
               "--prediction_path", str(tmp_path / "out.tsv"), "--seq_length", "12"])
        inferred = [r["label"].split(" ") for r in rows(tmp_path / "out.tsv")]
        answers = server.predict({"text_a": lines})
        assert [a["tags"] for a in answers] == inferred
        for line, answer, tags in zip(lines, answers, inferred):
            words = line.split(" ")
            spans = [(sum(len(w) + 1 for w in words[:i]), sum(len(w) + 1 for w in words[:i]) + len(w))
                     for i, w in enumerate(words)]
            assert answer["words"] == words
            assert answer["entities"] == expected_entities(line, spans, tags)
            assert answer["truncated"] >= len(words) - 10 and all(t == "O" for t in tags[len(words) - answer["truncated"]:])
        assert all(a["truncated"] > 0 for a in answers)  # every line is longer than 10 words
        status, meta, _ = server.request("GET", "/metadata")
        assert status == 200 and meta["task"] == "ner" and meta["ner_words"] == "space" and "B-LOC" in meta["labels"]
    finally:
        server.kill()


def test_ner_concurrent_requests_are_batched(ner):
    texts = [r["text_a"].replace(" ", "") for r in rows(ner["data"] / "dev.tsv")][:24]
    alone = [ner["server"].predict({"text_a": t})[0] for t in texts[:4]]
    before = ner["server"].request("GET", "/health")[1]
    barrier = threading.Barrier(12)

    def one(i):
        barrier.wait()
        return ner["server"].predict({"text_a": [texts[2 * i], texts[2 * i + 1]]})

    with ThreadPoolExecutor(12) as pool:
        together = [a for answers in pool.map(one, range(12)) for a in answers]
    assert together[:4] == alone
    after = ner["server"].request("GET", "/health")[1]
    assert after["texts"] - before["texts"] == 24 and after["requests"] - before["requests"] == 12
    # 12 requests of 2 texts in fewer than 12 forwards: texts of different requests shared one (at most 8)
    assert 3 <= after["batches"] - before["batches"] < 12


NER_BAD = [
    ({"text": "x"}, 422, "unknown_field", "unknown field 'text': the fields are text_a"),
    ({}, 422, "missing_field", "text_a is missing"),
    ({"text_a": "   "}, 422, "empty_text", "text_a is only white space"),
    ({"text_a": ["ok", 3]}, 422, "wrong_type", "text_a[1] is a number: must be a string"),
    ({"text_a": "长" * 401}, 422, "text_too_long", "text_a has 401 characters: at most 400"),
    ({"text_a": []}, 422, "empty_batch", "text_a is an empty list"),
    (["text_a"], 400, "not_an_object", "the body is a list"),
]


@pytest.mark.parametrize("body, status, code, words", NER_BAD, ids=[b[2] for b in NER_BAD])
def test_ner_bad_requests(ner, body, status, code, words):
    got, answer, _ = ner["server"].request("POST", "/predict", body)
    assert got == status and answer["error"]["code"] == code and words in answer["error"]["message"], answer
    assert ner["server"].predict({"text_a": "北京"})[0]["words"] == ["北", "京"]  # still serving


def _questions(path):
    source = json.loads(path.read_text(encoding="utf-8"))
    return [(qa["id"], qa["question"], p["context"]) for a in source["data"] for p in a["paragraphs"]
            for qa in p["qas"]]


def test_mrc_answers_equal_infer(cmrc, tmp_path):
    pred = tmp_path / "answers.json"
    infer(["cmrc", "--load_model_path", str(cmrc["model"]), "--test_path", str(cmrc["data"] / "test.json"),
           "--prediction_path", str(pred)])
    inferred = json.loads(pred.read_text(encoding="utf-8"))
    questions = _questions(cmrc["data"] / "test.json")
    assert list(inferred) == [q for q, _, _ in questions]
    answers = cmrc["server"].predict({"question": [q for _, q, _ in questions], "context": [c for _, _, c in questions]})
    assert [a["text"] for a in answers] == list(inferred.values())
    assert any(a["text"] for a in answers)
    for (_, _, context), answer in zip(questions, answers):
        if answer["text"]:
            assert context[answer["start"]: answer["end"]] == answer["text"]
            assert isinstance(answer["score"], float)
    one = cmrc["server"].predict({"text_a": questions[0][1], "text_b": questions[0][2]})  # the task's names
    assert one == answers[:1]
    status, meta, _ = cmrc["server"].request("GET", "/metadata")
    assert status == 200 and meta["task"] == "cmrc" and meta["doc_stride"] == 48
    status, schema, _ = cmrc["server"].request("GET", "/openapi.json")
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert status == 200 and set(body["schema"]["properties"]) == {"question", "context", "text_a", "text_b"}


def test_mrc_score_is_the_best_windows_start_plus_end_logit(cmrc):
    """The score, recomputed here from the task model loaded by hand: max over windows and valid pairs
    (end >= start, at most max_answer_length tokens, among the 20 best starts and ends) of start + end."""
    import numpy as np
    import torch

    from uer_ds.tasks import TASKS
    from uer_ds.tasks.model import load_task_model
    from uer_ds.tokenizers import build_tokenizer

    _, question, context = _questions(cmrc["data"] / "test.json")[0]
    answer = cmrc["server"].predict({"question": question, "context": context})[0]
    model, info = load_task_model(cmrc["model"], lambda c, i: TASKS["cmrc"].build_heads(c, i["heads"]))
    tokenizer = build_tokenizer("bert", str(shared("models/google_zh_vocab.txt")))
    ids, offsets = tokenizer.encode_with_offsets(context)
    query = tokenizer.encode(question)[:64]
    cls, sep = tokenizer.vocab.get("[CLS]"), tokenizer.vocab.get("[SEP]")
    room, best = 96 - len(query) - 3, (-np.inf, None)
    begin = 0
    while True:
        window = ids[begin: begin + room]
        src = torch.tensor([[cls, *query, sep, *window, sep]])
        seg = torch.tensor([[1] * (len(query) + 2) + [2] * (len(window) + 1)])
        with torch.no_grad():
            start, end = (t[0].numpy() for t in model.eval()(src, {"task": 0}, seg, predict=True))
        first = len(query) + 2
        s_logits, e_logits = start[first: first + len(window)], end[first: first + len(window)]
        top_s, top_e = np.argsort(-s_logits, kind="stable")[:20], np.argsort(-e_logits, kind="stable")[:20]
        for s in top_s:
            for e in top_e:
                if s <= e < s + 40 and float(s_logits[s]) + float(e_logits[e]) > best[0]:
                    best = (float(s_logits[s]) + float(e_logits[e]),
                            (offsets[begin + s][0], offsets[begin + e][1]))
        if begin + room >= len(ids):
            break
        begin += 48
    assert answer["score"] == pytest.approx(best[0], abs=1e-4)
    assert (answer["start"], answer["end"]) == best[1]


MRC_BAD = [
    ({"question": "谁"}, 422, "missing_field", "context is missing"),
    ({"question": "谁", "context": "x", "text_a": "谁"}, 422, "duplicate_field", "question and text_a were both given"),
    ({"question": ["谁"], "context": "x"}, 422, "wrong_type", "context is a string but question is a list"),
    ({"question": ["谁", "何"], "context": ["x"]}, 422, "length_mismatch", "context has 1 texts, question 2"),
    ({"question": "谁", "context": "", }, 422, "empty_text", "context is empty"),
    ({"question": "谁", "context": "x", "top_k": 2}, 422, "unknown_field", "unknown field 'top_k'"),
]


@pytest.mark.parametrize("body, status, code, words", MRC_BAD, ids=[b[2] for b in MRC_BAD])
def test_mrc_bad_requests(cmrc, body, status, code, words):
    got, answer, _ = cmrc["server"].request("POST", "/predict", body)
    assert got == status and answer["error"]["code"] == code and words in answer["error"]["message"], answer
    assert len(cmrc["server"].predict({"question": "谁", "context": "张三是谁"})) == 1  # still serving


# ---- the same models exported to ONNX (`uer-ds export onnx`, fp32 and --int8) and served from the .onnx ----
def export_onnx(model, out, check_path, *flags):
    """`uer-ds export onnx` in its own process; its JSON report (parity with PyTorch on check_path)."""
    result = subprocess.run([*UER_DS, "export", "onnx", "--load_model_path", str(model), "--output", str(out),
                             "--check_path", str(check_path), *flags], capture_output=True, text=True, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_ner_onnx_server_equals_pytorch_server(ner, tmp_path):
    pytest.importorskip("onnxruntime")
    texts = [r["text_a"].replace(" ", "") for r in rows(ner["data"] / "test.tsv")]
    expected = ner["server"].predict({"text_a": texts})
    report = export_onnx(ner["model"], tmp_path / "ner.onnx", ner["data"] / "dev.tsv")
    assert report["max_abs_logits_diff"] <= 1e-4 and report["same_prediction"] == 1.0
    int8 = export_onnx(ner["model"], tmp_path / "ner8.onnx", ner["data"] / "dev.tsv", "--int8")
    for path in (tmp_path / "ner.onnx", tmp_path / "ner8.onnx"):
        server = Server(path, "--max_wait_ms", "20", "--max_batch_size", "8", "--max_text_chars", "400")
        try:
            answers = server.predict({"text_a": texts})
            meta = server.request("GET", "/metadata")[1]
        finally:
            server.kill()
        assert meta["kind"] == "onnx" and meta["task"] == "ner"
        same = sum(a == b for a, b in zip(answers, expected)) / len(expected)
        if path.name == "ner.onnx":
            assert answers == expected  # tags, entities, words: identical
        else:  # int8: agreement reported (on a model trained four steps), not required equal
            print(f"int8 NER: {same:.3f} of {len(expected)} sentences tagged as PyTorch tags them; export "
                  f"check: {int8['same_prediction']:.3f} of dev, largest |logit difference| {int8['max_abs_logits_diff']:.3g}")


def test_mrc_onnx_server_equals_pytorch_server(cmrc, tmp_path):
    pytest.importorskip("onnxruntime")
    questions = _questions(cmrc["data"] / "dev.json") + _questions(cmrc["data"] / "test.json")
    body = {"question": [q for _, q, _ in questions], "context": [c for _, _, c in questions]}
    expected = cmrc["server"].predict(body)
    report = export_onnx(cmrc["model"], tmp_path / "cmrc.onnx", cmrc["data"] / "dev.json")
    assert report["max_abs_logits_diff"] <= 1e-4 and report["same_prediction"] == 1.0
    int8 = export_onnx(cmrc["model"], tmp_path / "cmrc8.onnx", cmrc["data"] / "dev.json", "--int8")
    for path in (tmp_path / "cmrc.onnx", tmp_path / "cmrc8.onnx"):
        server = Server(path, "--max_wait_ms", "20", "--max_batch_size", "4")
        try:
            answers = server.predict(body)
        finally:
            server.kill()
        assert len(answers) == len(expected) == 8 and any(a["text"] for a in answers)
        same = sum(a["text"] == b["text"] for a, b in zip(answers, expected)) / len(expected)
        if path.name == "cmrc.onnx":
            for answer, want in zip(answers, expected):  # fp32: the same span; the score within 1e-4
                assert {k: v for k, v in answer.items() if k != "score"} == {k: v for k, v in want.items() if k != "score"}
                assert answer["score"] == pytest.approx(want["score"], abs=1e-4)
        else:
            print(f"int8 CMRC: {same:.3f} of {len(expected)} answers as PyTorch's; export check: "
                  f"{int8['same_prediction']:.3f} of dev windows, largest |logit difference| "
                  f"{int8['max_abs_logits_diff']:.3g}")
