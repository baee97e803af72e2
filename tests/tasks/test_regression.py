"""Regression fine-tuning (GLUE STS-B's kind) and the GLUE metrics: Pearson/Spearman against SciPy, Matthews
correlation against scikit-learn, and `uer-ds finetune regression` -> `uer-ds infer regression` end to end
(the report's dev Pearson equals SciPy's over the written predictions)."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from conftest import CORPORA, ROOT
from uer_ds.tasks.metrics import classification_metrics, matthews_corrcoef, pearson, regression_metrics

scipy_stats = pytest.importorskip("scipy.stats")
sklearn_metrics = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", range(4))
def test_pearson_and_spearman_equal_scipy(seed):
    rng = np.random.default_rng(seed)
    gold = np.round(rng.uniform(0, 5, 200), 1)  # STS-B-like scores, with ties
    pred = gold + rng.normal(0, 1.5, 200)
    pred[:20] = np.round(pred[:20])  # ties among the predictions too
    ours = regression_metrics(gold, pred)
    assert ours["pearson"] == pytest.approx(scipy_stats.pearsonr(gold, pred)[0], abs=1e-12)
    assert ours["spearman"] == pytest.approx(scipy_stats.spearmanr(gold, pred)[0], abs=1e-12)
    assert ours["mse"] == pytest.approx(sklearn_metrics.mean_squared_error(gold, pred), rel=1e-12)
    assert ours["mae"] == pytest.approx(sklearn_metrics.mean_absolute_error(gold, pred), rel=1e-12)


def test_constant_input_has_zero_correlation():
    assert pearson(np.ones(5), np.arange(5.0)) == 0.0
    assert regression_metrics(np.arange(5.0), np.full(5, 2.0))["spearman"] == 0.0


@pytest.mark.parametrize("labels_num, seed", [(2, 0), (2, 1), (3, 2), (5, 3)])
def test_matthews_equals_sklearn(labels_num, seed):
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, labels_num, 300)
    scores = rng.normal(size=(300, labels_num))
    scores[np.arange(300), gold] += rng.uniform(0, 2, 300)  # better than chance
    pred = scores.argmax(axis=1)
    assert classification_metrics(gold, scores)["mcc"] == pytest.approx(
        sklearn_metrics.matthews_corrcoef(gold, pred), abs=1e-12)


def test_matthews_of_a_constant_prediction_is_zero():
    gold, pred = np.array([0, 1, 1, 0]), np.zeros(4, dtype=int)
    matrix = np.zeros((2, 2), dtype=int)
    np.add.at(matrix, (gold, pred), 1)
    assert matthews_corrcoef(matrix) == 0.0 == sklearn_metrics.matthews_corrcoef(gold, pred)


def _regression_split(source, target, offset: int) -> None:
    """The shipped reviews with real-valued labels: sentiment (0/1) plus a deterministic fraction (0..0.6)."""
    lines = source.read_text(encoding="utf-8").splitlines()
    rows = [line.split("\t", 1) for line in lines[1:]]
    target.write_text("label\ttext_a\n" + "".join(f"{int(label) + ((i + offset) % 7) / 10:.1f}\t{text}\n"
                                                 for i, (label, text) in enumerate(rows)), encoding="utf-8")


@pytest.mark.slow
def test_finetune_and_infer_regression(tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "engine"))
    from engine_utils import run_job

    for split, offset in (("train", 0), ("dev", 3)):
        _regression_split(CORPORA / "reviews_cls" / f"{split}.tsv", tmp_path / f"{split}.tsv", offset)
    uer = [sys.executable, "-m", "uer_ds"]
    out = tmp_path / "model"
    result = run_job([*uer, "finetune", "regression", "--vocab_path", str(CORPORA / "vocab.txt"), "--config_path",
                      "bert/tiny", "--seq_length", "64", "--batch_size", "32", "--learning_rate", "1e-3",
                      "--epochs_num", "3", "--no_progress", "--metric", "spearman", "--train_path",
                      str(tmp_path / "train.tsv"), "--dev_path", str(tmp_path / "dev.tsv"), "--output_model_path",
                      str(out), "--bad_case_path", str(tmp_path / "bad.tsv")], timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "pearson" in result.stdout and "best dev spearman" in result.stdout
    report = json.loads((out / "report.json").read_text())
    dev = report["best"]["dev"]
    assert report["best"]["metric"] == "spearman" and dev["examples"] == 150
    assert dev["spearman"] > 0.3  # learned the sentiment part of the score

    predicted = tmp_path / "pred.tsv"
    result = run_job([*uer, "infer", "regression", "--load_model_path", str(out), "--vocab_path",
                      str(CORPORA / "vocab.txt"), "--test_path", str(tmp_path / "dev.tsv"), "--prediction_path",
                      str(predicted), "--no_progress"], timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    lines = predicted.read_text().splitlines()
    assert lines[0] == "score" and len(lines) == 151
    scores = np.array([float(v) for v in lines[1:]])
    gold = np.array([float(line.split("\t")[0]) for line in (tmp_path / "dev.tsv").read_text().splitlines()[1:]])
    assert dev["spearman"] == pytest.approx(scipy_stats.spearmanr(gold, scores)[0], abs=2e-3)
    assert dev["pearson"] == pytest.approx(scipy_stats.pearsonr(gold, scores)[0], abs=2e-3)
    bad = (tmp_path / "bad.tsv").read_text().splitlines()
    assert bad[0] == "source\tgold\tpredicted\tabs_error\ttext_a" and len(bad) == 101
    errors = [float(row.split("\t")[3]) for row in bad[1:]]
    assert errors == sorted(errors, reverse=True)


def test_a_label_that_is_not_a_number_names_its_line(tmp_path):
    from uer_ds.tasks import TASKS
    from uer_ds.tasks.data import TaskDataError
    from uer_ds.tokenizers import build_tokenizer

    path = tmp_path / "bad.tsv"
    path.write_text("label\ttext_a\n0.5\t好书\nhigh\t一般\n", encoding="utf-8")
    tokenizer = build_tokenizer("bert", vocab_path=str(CORPORA / "vocab.txt"))
    with pytest.raises(TaskDataError, match=r"bad.tsv:3: label 'high' is not a number"):
        TASKS["regression"].read(str(path), tokenizer, 16, {"labels_num": 1}, True)
