"""`uer-ds finetune / infer` for ner, cmrc, c3 and dbqa, end to end through the command line in
subprocesses (DeepSpeed starts there, not in pytest): tiny models from random weights, one short run
per task; the prediction files are checked against the inputs and against outside references
(seqeval for NER, the gold answers and contexts for CMRC, the option counts for C3, ranks recomputed
here for DBQA), and each agrees with the metrics the training run reported."""
from __future__ import annotations

import json
import sys

import pytest
from seqeval.metrics import f1_score

from conftest import ROOT, shared

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("deepspeed_ops")]
sys.path.insert(0, str(ROOT / "tests" / "engine"))
from engine_utils import run_job  # noqa: E402

UER_DS = [sys.executable, "-m", "uer_ds"]
TINY = ["--config_path", "bert/tiny", "--learning_rate", "1e-3", "--report_steps", "5", "--no_progress"]


def run(args, timeout=300):
    return run_job([*UER_DS, *args], timeout=timeout)


def tsv(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


@pytest.fixture(scope="module")
def vocab():
    return str(shared("models/google_zh_vocab.txt"))


def test_ner_with_crf_under_zero3(tmp_path, vocab):
    data = shared("datasets/test_data/msra_ner")
    label2id = shared("datasets/msra_ner/label2id.json")
    out = tmp_path / "ner"
    # a small BiLSTM learns entities within 2 epochs (a tiny BERT from scratch still tags all O there)
    bilstm = ["--config_path", "rnn/bilstm", "--emb_size", "64", "--hidden_size", "128", "--layers_num", "1"]
    result = run(["finetune", "ner", "--vocab_path", vocab, *TINY, *bilstm, "--learning_rate", "1e-2", "--seq_length",
                  "64", "--batch_size", "16", "--epochs_num", "2", "--crf", "--deepspeed_config", "zero3",
                  "--label2id_path", str(label2id),
                  "--train_path", str(data / "train.tsv"), "--dev_path", str(data / "dev.tsv"),
                  "--test_path", str(data / "test.tsv"), "--output_model_path", str(out)])
    assert result.returncode == 0, result.stdout[-3000:]
    assert "DeepSpeed ZeRO-3" in result.stdout and "entity F1" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert json.loads((out / "task.json").read_text())["heads"]["ner"]["crf"] is True
    pred = tmp_path / "ner.tsv"
    result = run(["infer", "ner", "--load_model_path", str(out), "--test_path", str(data / "test.tsv"),
                  "--prediction_path", str(pred), "--no_progress"])
    assert result.returncode == 0, result.stdout[-3000:]
    gold = [row["label"].split() for row in tsv(data / "test.tsv")]
    predicted = [row["label"].split() for row in tsv(pred)]
    assert [len(p) for p in predicted] == [len(g) for g in gold]  # one tag per token, every line
    labels = json.loads(label2id.read_text())
    assert all(tag in labels for tags in predicted for tag in tags)
    # the saved model's predictions, scored by seqeval, give the F1 the run reported for the test set
    assert report["test"]["predicted_entities"] > 0  # so the comparison has something to compare
    assert report["test"]["f1"] == pytest.approx(f1_score(gold, predicted))
    assert report["test"]["gold_entities"] == 42


def test_cmrc_windows_decoding_and_json_answers(tmp_path, vocab):
    data = shared("datasets/test_data/cmrc")
    out = tmp_path / "cmrc"
    result = run(["finetune", "cmrc", "--vocab_path", vocab, *TINY, "--seq_length", "96", "--doc_stride", "48",
                  "--max_answer_length", "40", "--batch_size", "16", "--epochs_num", "1", "--train_path",
                  str(data / "train.json"), "--dev_path", str(data / "dev.json"), "--output_model_path", str(out),
                  "--bad_case_path", str(tmp_path / "bad.tsv")])
    assert result.returncode == 0, result.stdout[-3000:]
    report = json.loads((out / "report.json").read_text())
    dev = report["best"]["dev"]
    assert dev["questions"] == 3 and dev["windows"] > 3  # 417-character context: several windows each
    pred = tmp_path / "answers.json"
    result = run(["infer", "cmrc", "--load_model_path", str(out), "--test_path", str(data / "dev.json"),
                  "--prediction_path", str(pred), "--no_progress"])
    assert result.returncode == 0, result.stdout[-3000:]
    answers = json.loads(pred.read_text(encoding="utf-8"))
    source = json.loads((data / "dev.json").read_text(encoding="utf-8"))
    questions = {qa["id"]: (p["context"], [a["text"] for a in qa["answers"]])
                 for article in source["data"] for p in article["paragraphs"] for qa in p["qas"]}
    assert list(answers) == list(questions)
    for qid, answer in answers.items():
        assert answer and answer in questions[qid][0]  # a span of its own context
    # the inference answers, scored by the task's scorer (checked against hand cases in test_mrc.py),
    # reproduce the dev F1 and EM of the best model
    from uer_ds.tasks.scoring import cmrc_f1, cmrc_metrics
    scored = cmrc_metrics([questions[q][1] for q in answers], list(answers.values()))
    assert (scored["f1"], scored["em"]) == pytest.approx((dev["f1"], dev["em"]))
    bad = tsv(tmp_path / "bad.tsv")  # the dev questions the best model did not answer perfectly
    assert {row["id"] for row in bad} == {q for q in answers if cmrc_f1(questions[q][1], answers[q]) < 1.0}
    assert all(row["predicted"] == answers[row["id"]] for row in bad)


def test_c3_variable_option_counts(tmp_path, vocab):
    source = json.loads(shared("datasets/c3/dev.json").read_text(encoding="utf-8"))
    ids = [d[2] for d in source]
    source = [d for d in source if ids.count(d[2]) == 1]  # documents whose ids are unique: ids "<doc>-<question>"
    # documents with 2- or 3-option questions beside 4-option ones, in both splits
    fewer = [d for d in source if any(len(q["choice"]) < 4 for q in d[1])][:12]
    others = [d for d in source if all(len(q["choice"]) == 4 for q in d[1])][:28]
    train, dev_docs = fewer[:8] + others[:22], fewer[8:] + others[22:]
    (tmp_path / "train.json").write_text(json.dumps(train, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "dev.json").write_text(json.dumps(dev_docs, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "c3"
    result = run(["finetune", "c3", "--vocab_path", vocab, *TINY, "--seq_length", "48", "--batch_size", "8",
                  "--epochs_num", "1", "--train_path", str(tmp_path / "train.json"), "--dev_path",
                  str(tmp_path / "dev.json"), "--output_model_path", str(out)])
    assert result.returncode == 0, result.stdout[-3000:]
    dev = json.loads((out / "report.json").read_text())["best"]["dev"]
    pred = tmp_path / "c3.jsonl"
    result = run(["infer", "c3", "--load_model_path", str(out), "--test_path", str(tmp_path / "dev.json"),
                  "--prediction_path", str(pred), "--batch_size", "3", "--no_progress"])
    assert result.returncode == 0, result.stdout[-3000:]
    rows = [json.loads(line) for line in pred.read_text(encoding="utf-8").splitlines()]
    questions = [(f"{d[2]}-{j}", q) for d in dev_docs for j, q in enumerate(d[1])]
    assert [r["id"] for r in rows] == [qid for qid, _ in questions] and dev["questions"] == len(rows)
    assert all(0 <= r["label"] < len(q["choice"]) for r, (_, q) in zip(rows, questions))
    assert {len(q["choice"]) for _, q in questions} >= {4} and len({len(q["choice"]) for _, q in questions}) > 1
    right = sum(q["choice"][r["label"]] == q["answer"] for r, (_, q) in zip(rows, questions))
    assert dev["accuracy"] == pytest.approx(right / len(rows))


def test_dbqa_ranks_and_mrr(tmp_path, vocab):
    data = ROOT / "corpora" / "dbqa"
    out = tmp_path / "dbqa"
    result = run(["finetune", "dbqa", "--vocab_path", vocab, *TINY, "--seq_length", "48", "--batch_size", "16",
                  "--epochs_num", "1", "--train_path", str(data / "train.tsv"), "--dev_path", str(data / "dev.tsv"),
                  "--output_model_path", str(out)])
    assert result.returncode == 0, result.stdout[-3000:]
    dev = json.loads((out / "report.json").read_text())["best"]["dev"]
    pred = tmp_path / "dbqa.tsv"
    result = run(["infer", "dbqa", "--load_model_path", str(out), "--test_path", str(data / "dev.tsv"),
                  "--prediction_path", str(pred), "--no_progress"])
    assert result.returncode == 0, result.stdout[-3000:]
    gold, predicted = tsv(data / "dev.tsv"), tsv(pred)
    assert len(predicted) == len(gold) == 150
    groups: dict[str, list[tuple[float, int, int]]] = {}
    for g, p in zip(gold, predicted):
        groups.setdefault(g["qid"], []).append((float(p["score"]), int(p["rank"]), int(g["label"])))
    reciprocal = []
    for rows in groups.values():
        assert sorted(r for _, r, _ in rows) == list(range(1, len(rows) + 1))
        by_score = sorted(range(len(rows)), key=lambda i: -rows[i][0])
        assert [rows[i][1] for i in by_score] == list(range(1, len(rows) + 1))
        reciprocal.append(1 / min(rows[i][1] for i in range(len(rows)) if rows[i][2] == 1))
    assert dev["questions"] == 30
    assert dev["mrr"] == pytest.approx(sum(reciprocal) / len(reciprocal), abs=1e-6)


def test_bad_inputs_fail_before_training_and_write_nothing(tmp_path, vocab):
    data = shared("datasets/test_data/msra_ner")
    lines = (data / "train.tsv").read_text(encoding="utf-8").splitlines()
    text, tags = lines[3].split("\t")
    lines[3] = f"{text}\t{tags} O"
    bad = tmp_path / "train.tsv"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run(["finetune", "ner", "--vocab_path", vocab, *TINY, "--label2id_path",
                  str(shared("datasets/msra_ner/label2id.json")), "--train_path", str(bad), "--dev_path",
                  str(data / "dev.tsv"), "--output_model_path", str(tmp_path / "out")])
    assert result.returncode == 1
    words = len(text.split())
    assert f"{bad}:4: label has {words + 1} tag(s) for {words} token(s) of text_a: one tag per" in result.stdout
    assert "Traceback" not in result.stdout and not (tmp_path / "out").exists()
