"""`uer-ds evaluate` (issue 25 item 1) and `uer-ds infer` on an ONNX export (item 5).

A tiny three-class model is fine-tuned once (deploy_cases.py).  The evaluation's numbers are checked
against scikit-learn on the predictions of the model loaded by hand (the reference outside the code
under test), against the test report the fine-tuning run wrote (the same code path), and the ONNX
export must give the same labels and probabilities within 1e-5 through `evaluate` and `infer`.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from deploy_cases import NAMES, UER_DS, VOCAB, finetune, make_data, read_texts, reference_probs
from conftest import ROOT

sklearn_metrics = pytest.importorskip("sklearn.metrics")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    directory = tmp_path_factory.mktemp("evaluate")
    data = make_data(directory / "data")
    return {"data": data, "model": finetune(directory, data), "dir": directory}


def evaluate(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """`uer-ds evaluate` in a fresh interpreter, which then says whether deepspeed was ever imported."""
    code = ("import sys; from uer_ds.cli import main; rc = main(sys.argv[1:]); "
            "print('deepspeed imported:', 'deepspeed' in sys.modules); sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, "evaluate", *args, "--no_progress"], capture_output=True,
                          text=True, cwd=cwd or ROOT, timeout=300)


def read_tsv(path):
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


def test_evaluate_agrees_with_scikit_learn(trained, tmp_path):
    out = tmp_path / "eval"
    result = evaluate("--load_model_path", str(trained["model"]), "--test_path", str(trained["data"]["test"]),
                      "--output_dir", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "deepspeed imported: False" in result.stdout  # deployment never loads the training engine
    assert "confusion (rows gold, columns predicted)" in result.stdout
    gold_names, texts = read_texts(trained["data"]["test"])
    gold = np.array([NAMES.index(n) for n in gold_names])
    probs = reference_probs(trained["model"], texts)
    pred = probs.argmax(1)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    metrics = report["metrics"]
    assert report["kind"] == "task" and report["task"] == "classifier" and metrics["examples"] == 150
    assert 0.5 < metrics["accuracy"] < 1.0  # learned something, and there are bad cases to report
    assert metrics["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(gold, pred))
    assert metrics["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(gold, pred, average="macro"))
    assert metrics["mcc"] == pytest.approx(sklearn_metrics.matthews_corrcoef(gold, pred))
    assert metrics["top2_accuracy"] == pytest.approx(sklearn_metrics.top_k_accuracy_score(gold, probs, k=2))
    confusion = sklearn_metrics.confusion_matrix(gold, pred, labels=[0, 1, 2])
    assert metrics["confusion"] == confusion.tolist()
    p, r, f, s = sklearn_metrics.precision_recall_fscore_support(gold, pred, labels=[0, 1, 2], zero_division=0)
    per_class = read_tsv(out / "per_class.tsv")
    assert per_class[0] == ["label", "precision", "recall", "f1", "support"]
    for i, row in enumerate(per_class[1:]):
        assert row[0] == NAMES[i] and int(row[4]) == s[i]
        np.testing.assert_allclose([float(v) for v in row[1:4]], [p[i], r[i], f[i]], atol=1e-6)
    table = read_tsv(out / "confusion.tsv")
    assert table[0] == ["gold\\predicted", *NAMES]
    assert [[int(v) for v in row[1:]] for row in table[1:]] == confusion.tolist()
    assert [row[0] for row in table[1:]] == NAMES
    bad = read_tsv(out / "bad_cases.tsv")
    assert bad[0] == ["source", "gold", "predicted", "confidence", "text_a"]
    wrong = np.flatnonzero(pred != gold)
    assert len(bad) - 1 == len(wrong) > 0
    for row, i in zip(bad[1:], wrong):
        assert row[0].endswith(f":{i + 2}")  # file:line (line 1 is the header)
        assert row[1] == NAMES[gold[i]] and row[2] == NAMES[pred[i]] and row[4] == texts[i]
        assert float(row[3]) == pytest.approx(probs[i].max(), abs=1e-4)


def test_evaluate_gives_the_fine_tuning_runs_test_report(trained, tmp_path):
    """One implementation: evaluating the best model on the test split reproduces report.json's test entry."""
    out = tmp_path / "eval"
    result = evaluate("--load_model_path", str(trained["model"]), "--test_path", str(trained["data"]["test"]),
                      "--output_dir", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    training = json.loads((trained["model"] / "report.json").read_text(encoding="utf-8"))["test"]
    ours = json.loads((out / "report.json").read_text(encoding="utf-8"))["metrics"]
    assert ours.keys() == training.keys()
    for key, value in training.items():
        if isinstance(value, float):
            assert ours[key] == pytest.approx(value, abs=1e-9), key
        else:
            assert ours[key] == value, key


def test_onnx_export_evaluates_and_infers_as_pytorch(trained, tmp_path):
    """Item 5: the exported graph, with the tokenizer and label names read from its metadata, gives the
    PyTorch model's labels, and its probabilities within 1e-5, through `evaluate` and `infer`."""
    from uer_ds.cli import main

    onnx = tmp_path / "model.onnx"
    assert main(["export", "onnx", "--load_model_path", str(trained["model"]), "--output", str(onnx),
                 "--check_path", str(trained["data"]["dev"])]) == 0
    reports = {}
    for name, path in (("task", trained["model"]), ("onnx", onnx)):
        result = evaluate("--load_model_path", str(path), "--test_path", str(trained["data"]["test"]),
                          "--output_dir", str(tmp_path / name))
        assert result.returncode == 0, result.stderr[-3000:]
        reports[name] = json.loads((tmp_path / name / "report.json").read_text(encoding="utf-8"))
    assert reports["onnx"]["kind"] == "onnx"
    assert reports["onnx"]["metrics"]["confusion"] == reports["task"]["metrics"]["confusion"]
    assert reports["onnx"]["metrics"]["top2_accuracy"] == reports["task"]["metrics"]["top2_accuracy"]
    assert (tmp_path / "onnx" / "bad_cases.tsv").read_text() .count("\n") == \
        (tmp_path / "task" / "bad_cases.tsv").read_text().count("\n")

    _, texts = read_texts(trained["data"]["test"])
    reference = reference_probs(trained["model"], texts)
    for name, path in (("task", trained["model"]), ("onnx", onnx)):
        prediction = tmp_path / f"{name}.tsv"
        result = subprocess.run([*UER_DS, "infer", "classifier", "--load_model_path", str(path), "--test_path",
                                 str(trained["data"]["test"]), "--prediction_path", str(prediction), "--output_prob",
                                 "--no_progress"], capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        rows = read_tsv(prediction)
        assert rows[0] == ["label", "prob"] and len(rows) == 151
        assert [r[0] for r in rows[1:]] == [NAMES[i] for i in reference.argmax(1)]
        probs = np.array([[float(v) for v in r[1].split()] for r in rows[1:]])
        np.testing.assert_allclose(probs, reference, atol=1e-5, rtol=0)


def test_evaluate_errors_name_the_input(trained, tmp_path):
    unlabelled = tmp_path / "nolabel.tsv"
    unlabelled.write_text("text_a\n好书\n", encoding="utf-8")
    result = evaluate("--load_model_path", str(trained["model"]), "--test_path", str(unlabelled),
                      "--output_dir", str(tmp_path / "e"))
    assert result.returncode == 1 and "nolabel.tsv" in result.stderr and "label" in result.stderr
    assert not (tmp_path / "e" / "report.json").exists()
    unknown = tmp_path / "unknown.tsv"
    unknown.write_text("label\ttext_a\n中性\t好书\n", encoding="utf-8")
    result = evaluate("--load_model_path", str(trained["model"]), "--test_path", str(unknown),
                      "--output_dir", str(tmp_path / "e"))
    assert result.returncode == 1 and "unknown.tsv:2" in result.stderr and "中性" in result.stderr
    result = evaluate("--load_model_path", str(tmp_path / "nothing"), "--test_path", str(unknown))
    assert result.returncode == 1 and f"--load_model_path '{tmp_path / 'nothing'}'" in result.stderr
    result = evaluate("--load_model_path", str(trained["model"]), "--test_path", str(trained["data"]["test"]),
                      "--output_dir", str(unknown))
    assert result.returncode == 1 and "is a file, not a directory" in result.stderr
    result = evaluate("--load_model_path", str(trained["model"]), "--test_path", str(trained["data"]["test"]),
                      "--top_k", "0")
    assert result.returncode == 1 and "--top_k has value 0: must be positive" in result.stderr


def test_int8_export_predicts_close_to_pytorch(trained, tmp_path):
    """Item 4b: `export onnx --int8` (dynamic quantization) keeps the task metadata, so `infer` reads it
    alone; its probabilities stay within 0.1 of PyTorch's and its labels agree on >= 95 % of the test set."""
    from uer_ds.cli import main
    from uer_ds.convert.resolve import ONNX_TASK_KEY
    from uer_ds.tasks.onnx import onnx_metadata

    int8, fp32 = tmp_path / "model.int8.onnx", tmp_path / "model.onnx"
    assert main(["export", "onnx", "--load_model_path", str(trained["model"]), "--output", str(fp32)]) == 0
    assert main(["export", "onnx", "--load_model_path", str(trained["model"]), "--output", str(int8), "--int8",
                 "--check_path", str(trained["data"]["dev"])]) == 0
    assert onnx_metadata(str(int8))[ONNX_TASK_KEY] == onnx_metadata(str(fp32))[ONNX_TASK_KEY]
    assert int8.stat().st_size < 0.6 * fp32.stat().st_size  # int8 weights (embeddings stay fp32 in the tiny model)
    assert not list(tmp_path.glob("*.fp32.onnx"))  # the fp32 intermediate is removed
    _, texts = read_texts(trained["data"]["test"])
    reference = reference_probs(trained["model"], texts)
    prediction = tmp_path / "int8.tsv"
    result = subprocess.run([*UER_DS, "infer", "classifier", "--load_model_path", str(int8), "--test_path",
                             str(trained["data"]["test"]), "--prediction_path", str(prediction), "--output_prob",
                             "--no_progress"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_tsv(prediction)[1:]
    probs = np.array([[float(v) for v in r[1].split()] for r in rows])
    assert np.abs(probs - reference).max() <= 0.1
    agree = np.mean([r[0] == NAMES[i] for r, i in zip(rows, reference.argmax(1))])
    assert agree >= 0.95, agree


def test_bench_infer_and_serve_write_their_tables(trained, tmp_path):
    """The benchmarks run end to end (short): tables printed, JSON written, no failed request (timings are
    the benchmarks' business, not asserted)."""
    infer_json, serve_json = tmp_path / "infer.json", tmp_path / "serve.json"
    result = subprocess.run([*UER_DS, "bench", "infer", "--load_model_path", str(trained["model"]), "--test_path",
                             str(trained["data"]["test"]), "--seconds", "0.5", "--json_path", str(infer_json)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(infer_json.read_text())
    assert [r["batch_size"] for r in record["results"]] == [1, 32] and "texts/s" in result.stdout
    training = json.loads((trained["model"] / "report.json").read_text(encoding="utf-8"))["test"]
    assert record["results"][0]["accuracy"] == pytest.approx(training["accuracy"], abs=1e-4)
    pytest.importorskip("fastapi")
    result = subprocess.run([*UER_DS, "bench", "serve", "--load_model_path", str(trained["model"]), "--test_path",
                             str(trained["data"]["test"]), "--clients", "8", "--duration", "1", "--warmup", "0.5",
                             "--json_path", str(serve_json)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(serve_json.read_text())
    assert [r["mode"] for r in record["results"]] == ["dynamic", "batch1"]
    for row in record["results"]:
        assert row["failures"] == 0 and row["requests"] > 0 and row["server_exit"] == 0, row
    assert record["results"][1]["largest_batch"] == 1 and "dynamic batching:" in result.stdout
