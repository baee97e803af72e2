"""`uer-ds finetune / infer` end to end on ../shared/data/datasets/test_data, through the command line
in subprocesses (DeepSpeed starts there, not in pytest): outputs complete and consistent with each
other, ZeRO-3 and two-process multi-task runs, distillation input, and bad input."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from conftest import ROOT, shared

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("deepspeed_ops")]
sys.path.insert(0, str(ROOT / "tests" / "engine"))
from engine_utils import BIN, free_port, run_job  # noqa: E402

UER_DS = [sys.executable, "-m", "uer_ds"]
TINY = ["--config_path", "bert/tiny", "--seq_length", "32", "--batch_size", "16", "--learning_rate", "1e-3",
        "--report_steps", "5", "--no_progress"]


def run(args, timeout=300):
    return run_job([*UER_DS, *args], timeout=timeout)


def read_tsv(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return header, [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def gold_labels(path):
    return [int(row["label"]) for row in read_tsv(path)[1]]


@pytest.fixture(scope="module")
def book_review():
    return shared("datasets/test_data/book_review")


@pytest.fixture(scope="module")
def vocab():
    return str(shared("models/google_zh_vocab.txt"))


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, book_review, vocab):
    """Tiny BERT from random weights, 2 epochs, DeepSpeed ZeRO-3 (gathered for the best model)."""
    out = tmp_path_factory.mktemp("ft")
    result = run(["finetune", "classifier", "--vocab_path", vocab, *TINY, "--epochs_num", "2",
                  "--train_path", str(book_review / "train.tsv"), "--dev_path", str(book_review / "dev.tsv"),
                  "--test_path", str(book_review / "test.tsv"), "--output_model_path", str(out / "model"),
                  "--deepspeed_config", "zero3", "--bad_case_path", str(out / "bad.tsv"),
                  "--metrics_path", str(out / "metrics.jsonl")])
    assert result.returncode == 0, result.stdout[-3000:]
    return out, result.stdout


def test_finetune_writes_a_complete_model_and_report(finetuned, book_review):
    out, stdout = finetuned
    model = out / "model"
    assert {"config.json", "task.json", "model.safetensors", "report.json"} <= {p.name for p in model.iterdir()}
    report = json.loads((model / "report.json").read_text())
    assert [e["epoch"] for e in report["epochs"]] == [1, 2] and report["steps_per_epoch"] == 13  # ceil(200 / 16)
    best = max(report["epochs"], key=lambda e: e["dev"]["accuracy"])
    assert report["best"]["dev"]["accuracy"] == best["dev"]["accuracy"]
    dev = report["best"]["dev"]
    assert dev["examples"] == 50 and sum(map(sum, dev["confusion"])) == 50
    assert report["test"]["examples"] == 50 and "test (best model): 50 examples" in stdout
    assert "pretrained: " not in stdout and "every weight starts from random initialisation" in stdout
    # bad cases: exactly the dev errors of the best model, with gold != predicted
    header, rows = read_tsv(out / "bad.tsv")
    assert header == ["source", "gold", "predicted", "confidence", "text_a"]
    assert len(rows) == round(50 * (1 - dev["accuracy"]))
    assert all(r["gold"] != r["predicted"] and r["source"].startswith(str(book_review / "dev.tsv")) for r in rows)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r.get("split") == "dev"] == [13, 26]
    assert {"classifier_loss", "classifier_acc", "lr"} <= set(records[0])
    assert list((model / "tensorboard").glob("events.out.tfevents.*"))


def test_infer_output_format_and_agreement_with_training_report(finetuned, book_review, vocab):
    out, _ = finetuned
    pred = out / "pred.tsv"
    result = run(["infer", "classifier", "--load_model_path", str(out / "model"), "--vocab_path", vocab,
                  "--test_path", str(book_review / "test_nolabel.tsv"), "--prediction_path", str(pred),
                  "--output_logits", "--output_prob", "--top_k", "2", "--batch_size", "7", "--no_progress"])
    assert result.returncode == 0, result.stdout[-3000:]
    header, rows = read_tsv(pred)
    assert header == ["label", "logits", "prob", "top_k_labels", "top_k_probs"]
    assert len(rows) == len(read_tsv(book_review / "test_nolabel.tsv")[1]) == 50
    for row in rows:
        logits = np.array(row["logits"].split(), dtype=float)
        prob = np.array(row["prob"].split(), dtype=float)
        np.testing.assert_allclose(prob, np.exp(logits) / np.exp(logits).sum(), atol=1e-5)
        assert int(row["label"]) == int(prob.argmax()) == int(row["top_k_labels"].split()[0])
    # predictions of the saved model on the labelled test file reproduce the report's test accuracy
    # (the report came from the model gathered out of ZeRO-3 shards and reloaded)
    result = run(["infer", "classifier", "--load_model_path", str(out / "model"), "--test_path",
                  str(book_review / "test.tsv"), "--prediction_path", str(out / "test_pred.tsv"), "--no_progress"])
    assert result.returncode == 0, result.stdout[-3000:]
    predicted = [int(r["label"]) for r in read_tsv(out / "test_pred.tsv")[1]]
    accuracy = np.mean(np.array(predicted) == np.array(gold_labels(book_review / "test.tsv")))
    report = json.loads((out / "model" / "report.json").read_text())
    assert accuracy == pytest.approx(report["test"]["accuracy"])
    assert [int(r["label"]) for r in rows] == predicted  # same texts, same model -> same labels


def test_multitask_on_two_processes_then_distillation_from_it(tmp_path, book_review, vocab):
    chn = shared("datasets/test_data/chnsenticorp")
    mt = tmp_path / "mt"
    cmd = [str(BIN / "deepspeed"), "--num_gpus", "2", "--master_port", str(free_port()), "--module", "uer_ds",
           "finetune", "mt_classifier", "--vocab_path", vocab, *TINY, "--epochs_num", "1", "--deepspeed_config",
           "zero2", "--dataset_path_list", str(book_review), str(chn), "--output_model_path", str(mt)]
    result = run_job(cmd, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    report = json.loads((mt / "report.json").read_text())
    heads = report["best"]["dev"]["heads"]
    assert set(heads) == {"book_review", "chnsenticorp"} and heads["chnsenticorp"]["examples"] == 50
    assert report["best"]["dev"]["accuracy"] == pytest.approx(np.mean([h["accuracy"] for h in heads.values()]))
    # 2 ranks x 16 rows per global batch: book_review 200 -> 7 batches, chnsenticorp 500 -> 16 (last: 20 rows)
    assert report["steps_per_epoch"] == 7 + 16
    task = json.loads((mt / "task.json").read_text())
    assert list(task["heads"]) == ["book_review", "chnsenticorp"]

    # distillation: a training file with a teacher `logits` column; the body comes from the multi-task model
    header, rows = read_tsv(book_review / "train.tsv")
    soft = tmp_path / "train_soft.tsv"
    soft.write_text("label\ttext_a\tlogits\n" + "".join(
        f"{r['label']}\t{r['text_a']}\t{'2.0 -2.0' if r['label'] == '0' else '-2.0 2.0'}\n" for r in rows),
        encoding="utf-8")
    out = tmp_path / "student"
    result = run(["finetune", "classifier", "--vocab_path", vocab, *TINY, "--epochs_num", "1",
                  "--pretrained_model_path", str(mt), "--train_path", str(soft), "--dev_path",
                  str(book_review / "dev.tsv"), "--output_model_path", str(out), "--soft_targets",
                  "--soft_alpha", "0.5"])
    assert result.returncode == 0, result.stdout[-3000:]
    assert "not loaded, as expected: the pre-trained model's own heads ['book_review', 'chnsenticorp']" in result.stdout
    assert "loaded 37 embedding/encoder tensors" in result.stdout
    assert json.loads((out / "task.json").read_text())["heads"]["classifier"]["soft"] is True


def test_eval_steps_on_two_processes_dev_loss_and_the_best_model_by_it(tmp_path, book_review, vocab):
    """--eval_steps 4: dev evaluations at steps 4 and 7 (the last), each with the dev loss; --metric loss keeps
    the model of the lowest, and that model's dev loss, from its own logits (uer-ds infer) and numpy's
    cross-entropy, is the one the run logged (ZeRO-3 on two ranks: each dev example counted once)."""
    out = tmp_path / "model"
    cmd = [str(BIN / "deepspeed"), "--num_gpus", "2", "--master_port", str(free_port()), "--module", "uer_ds",
           "finetune", "classifier", "--vocab_path", vocab, *TINY, "--epochs_num", "1", "--eval_steps", "4",
           "--metric", "loss", "--deepspeed_config", "zero3", "--train_path", str(book_review / "train.tsv"),
           "--dev_path", str(book_review / "dev.tsv"), "--output_model_path", str(out),
           "--metrics_path", str(tmp_path / "metrics.jsonl")]
    result = run_job(cmd, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["steps_per_epoch"] == 7  # ceil(200 / (2 ranks x 16))
    assert [e["step"] for e in report["epochs"]] == [4, 7]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    dev = [r for r in records if r.get("split") == "dev"]
    assert [r["step"] for r in dev] == [4, 7] and all(r["loss"] > 0 for r in dev)
    best = min(report["epochs"], key=lambda e: e["dev"]["loss"])
    assert report["best"]["step"] == best["step"] and report["best"]["metric"] == "loss"

    pred = tmp_path / "dev_pred.tsv"
    result = run(["infer", "classifier", "--load_model_path", str(out), "--test_path", str(book_review / "dev.tsv"),
                  "--prediction_path", str(pred), "--output_logits", "--no_progress"])
    assert result.returncode == 0, result.stdout[-3000:]
    logits = np.array([row["logits"].split() for row in read_tsv(pred)[1]], dtype=np.float64)
    gold = np.array(gold_labels(book_review / "dev.tsv"))
    log_probs = logits - logits.max(1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(1, keepdims=True))
    assert -log_probs[np.arange(len(gold)), gold].mean() == pytest.approx(best["dev"]["loss"], abs=1e-4)


def test_eval_steps_must_be_positive(tmp_path, book_review, vocab):
    result = run(["finetune", "classifier", "--vocab_path", vocab, *TINY, "--eval_steps", "0",
                  "--train_path", str(book_review / "train.tsv"), "--dev_path", str(book_review / "dev.tsv"),
                  "--output_model_path", str(tmp_path / "m")])
    assert result.returncode != 0 and "--eval_steps has value 0: must be positive" in result.stdout
    assert not (tmp_path / "m").exists()


def test_bad_training_row_fails_before_training_and_writes_nothing(tmp_path, book_review, vocab):
    lines = (book_review / "train.tsv").read_text(encoding="utf-8").splitlines()
    lines[5] = "7\t" + lines[5].split("\t", 1)[1]
    bad = tmp_path / "train.tsv"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run(["finetune", "classifier", "--vocab_path", vocab, *TINY, "--labels_num", "2",
                  "--train_path", str(bad), "--dev_path", str(book_review / "dev.tsv"),
                  "--output_model_path", str(tmp_path / "out")])
    assert result.returncode == 1
    assert f"{bad}:6: label 7 is out of range: labels must be in 0..1 (labels_num is 2)" in result.stdout
    assert "Traceback" not in result.stdout and not (tmp_path / "out").exists()
