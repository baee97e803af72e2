"""PaddleNLP's text-classification flow (its multi-class and multi-label guides): `text<TAB>label` files
without a header row, label names listed in label.txt, header-less prediction files, multi-label
classification (sigmoid per label; micro/macro F1 checked against scikit-learn), and resuming an
interrupted fine-tuning run: the same losses, dev metrics, best model and early-stopping state as an
uninterrupted run."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import CORPORA, ROOT
from uer_ds.tasks.data import TaskDataError, TsvRow, headerless_columns, parse_label, read_label_names, read_tsv
from uer_ds.tasks.multi_label import MultiLabelClassifierTask, multi_label_metrics

sys.path.insert(0, str(ROOT / "tests" / "engine"))
from engine_utils import run_job  # noqa: E402

NAMES = {"0": "负面", "1": "正面"}


# ---- files ------------------------------------------------------------------------------------------
def test_headerless_columns_follow_paddlenlp(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("好书\t正面\n", encoding="utf-8")
    assert headerless_columns(str(f), labelled=True, pair=None) == ["text_a", "label"]
    assert headerless_columns(str(f), labelled=False, pair=False) == ["text_a", "label"]  # label ignored
    f.write_text("问\t答\t1\n", encoding="utf-8")
    assert headerless_columns(str(f), labelled=True, pair=None) == ["text_a", "text_b", "label"]
    assert headerless_columns(str(f), labelled=False, pair=True) == ["text_a", "text_b", "label"]
    f.write_text("只有文本\n", encoding="utf-8")
    assert headerless_columns(str(f), labelled=False, pair=False) == ["text_a"]
    with pytest.raises(TaskDataError, match=r"a.txt:1: 1 column\(s\); without a header \(--no_header\) a labelled "
                                            r"file has text_a label"):
        headerless_columns(str(f), labelled=True, pair=None)
    header, rows = read_tsv(str(f), ["text_a"], columns=["text_a"])
    assert rows[0].line == 1 and rows[0].values == {"text_a": "只有文本"}  # no header: line 1 is an example


def test_label_names(tmp_path):
    (tmp_path / "label.txt").write_text("负面\n正面\n", encoding="utf-8")
    names = read_label_names(str(tmp_path / "label.txt"))
    row = TsvRow("x.txt", 3, {"label": "正面"})
    assert parse_label(row, 2, names=names) == 1
    with pytest.raises(TaskDataError, match=r"x.txt:3: label '中性' is not one of the --label_path names "
                                            r"\(负面, 正面\)"):
        parse_label(TsvRow("x.txt", 3, {"label": "中性"}), 2, names=names)
    (tmp_path / "bad.txt").write_text("负面\n正面\n负面\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match=r"bad.txt:3: label name '负面' appears twice \(first on line 1\)"):
        read_label_names(str(tmp_path / "bad.txt"))


def test_multi_label_gold_parsing():
    task = MultiLabelClassifierTask()
    names = ["体育", "财经", "科技"]
    assert task.parse_gold(TsvRow("m", 2, {"label": "科技,体育"}), 3, names) == [0, 2]
    assert task.parse_gold(TsvRow("m", 2, {"label": "2,0"}), 3, None) == [0, 2]
    assert task.parse_gold(TsvRow("m", 2, {"label": ""}), 3, None) == []
    with pytest.raises(TaskDataError, match=r"m:2: label '1,1' names a label twice"):
        task.parse_gold(TsvRow("m", 2, {"label": "1,1"}), 3, None)
    with pytest.raises(TaskDataError, match=r"m:2: label 3 is out of range"):
        task.parse_gold(TsvRow("m", 2, {"label": "0,3"}), 3, None)


def test_multi_label_metrics_equal_scikit_learns():
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    rng = np.random.default_rng(0)
    gold = rng.random((200, 6)) < 0.3
    pred = rng.random((200, 6)) < 0.35
    gold[:, 5] = False  # a label nobody has: scores 0, as scikit-learn's zero_division=0
    got = multi_label_metrics(gold, pred)
    for average in ("micro", "macro"):
        assert got[f"{average}_f1"] == pytest.approx(f1_score(gold, pred, average=average, zero_division=0))
        assert got[f"{average}_precision"] == pytest.approx(precision_score(gold, pred, average=average,
                                                                            zero_division=0))
        assert got[f"{average}_recall"] == pytest.approx(recall_score(gold, pred, average=average, zero_division=0))
    assert got["accuracy"] == pytest.approx(accuracy_score(gold, pred))  # subset accuracy


def test_multi_label_head_loss_is_binary_cross_entropy():
    from uer_ds.config import ModelConfig
    from uer_ds.tasks.multi_label import MultiLabelHead

    torch.manual_seed(0)
    cfg = ModelConfig.from_json("bert/tiny", {"vocab_size": 50})
    head = MultiLabelHead(cfg, 4, "first")
    hidden, seg = torch.randn(3, 5, 128), torch.ones(3, 5, dtype=torch.long)
    gold = torch.tensor([[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.float)
    result = head(hidden, {"label": gold}, seg)
    p = torch.sigmoid(head.logits(hidden, seg))
    by_hand = -(gold * p.log() + (1 - gold) * (1 - p).log()).mean()  # UER-py: nn.BCELoss()(sigmoid, tgt)
    torch.testing.assert_close(result.loss, by_hand)
    assert int(result.denominator) == 3 and int(result.correct) == int(((p > 0.5) == (gold > 0.5)).all(1).sum())


# ---- end to end (DeepSpeed runs in subprocesses) ----------------------------------------------------------
UER_DS = [sys.executable, "-m", "uer_ds"]


@pytest.fixture(scope="module")
def paddle_files(tmp_path_factory):
    """corpora/reviews_cls as PaddleNLP's files: train.txt / dev.txt `text<TAB>name`, label.txt, data.txt
    to predict; and a multi-label version (sentiment, plus 长文 for long reviews, 英文 for English in it)."""
    root = tmp_path_factory.mktemp("paddle")
    for split, n in (("train", 96), ("dev", 48)):
        rows = [line.split("\t") for line in
                (CORPORA / "reviews_cls" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:n + 1]]
        (root / f"{split}.txt").write_text("".join(f"{t}\t{NAMES[y]}\n" for y, t in rows), encoding="utf-8")
        multi = []
        for y, t in rows:
            labels = [NAMES[y]] + (["长文"] if len(t) > 60 else []) + (["英文"] if any(c.isascii() and c.isalpha()
                                                                                      for c in t) else [])
            multi.append(f"{t}\t{','.join(labels)}\n")
        (root / f"{split}_multi.txt").write_text("".join(multi), encoding="utf-8")
    (root / "label.txt").write_text("负面\n正面\n", encoding="utf-8")
    (root / "label_multi.txt").write_text("负面\n正面\n长文\n英文\n", encoding="utf-8")
    texts = (CORPORA / "reviews_cls" / "test_nolabel.tsv").read_text(encoding="utf-8").splitlines()[1:21]
    (root / "data.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    return root


def finetune_args(files, out, *extra, train="train.txt", dev="dev.txt", label="label.txt"):
    return ["--vocab_path", str(CORPORA / "vocab.txt"), "--config_path", "bert/tiny",
            "--train_path", str(files / train),
            "--dev_path", str(files / dev), "--label_path", str(files / label), "--no_header", "--output_model_path",
            str(out), "--batch_size", "16", "--seq_length", "32", "--learning_rate", "1e-3", "--report_steps", "1",
            "--no_progress", *extra]


def records(path):
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in lines if "split" not in r], [r for r in lines if r.get("split") == "dev"]


@pytest.mark.slow
@pytest.mark.usefixtures("deepspeed_ops")
def test_resume_continues_an_interrupted_run_exactly(paddle_files, tmp_path):
    common = ["--epochs_num", "3", "--patience", "2", "--bad_case_path"]
    whole = run_job([*UER_DS, "finetune", "classifier", *finetune_args(
        paddle_files, tmp_path / "whole", *common, str(tmp_path / "bad_whole.tsv"), "--metrics_path",
        str(tmp_path / "whole.jsonl"))])
    assert whole.returncode == 0, whole.stdout[-3000:]
    parts = finetune_args(paddle_files, tmp_path / "parts", *common, str(tmp_path / "bad_parts.tsv"), "--metrics_path",
                          str(tmp_path / "parts.jsonl"))
    first = run_job([*UER_DS, "finetune", "classifier", *parts, "--stop_after_steps", "9"])  # inside epoch 2 of 6 steps
    assert first.returncode == 0 and "stopped after step 9 of 18" in first.stdout, first.stdout[-3000:]
    assert (tmp_path / "parts" / "checkpoint" / "latest").read_text() == "global_step9"
    second = run_job([*UER_DS, "finetune", "classifier", *parts, "--resume"])
    assert second.returncode == 0 and "resumed after step 9" in second.stdout, second.stdout[-3000:]

    (train_a, dev_a), (train_b, dev_b) = records(tmp_path / "whole.jsonl"), records(tmp_path / "parts.jsonl")
    assert [r["step"] for r in train_b] == list(range(1, 19)) == [r["step"] for r in train_a]
    assert [r["loss"] for r in train_b] == pytest.approx([r["loss"] for r in train_a], abs=1e-6)
    assert [(r["step"], r["accuracy"]) for r in dev_b] == [(r["step"], r["accuracy"]) for r in dev_a]
    a, b = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("whole", "parts"))
    assert b["best"] == a["best"] and b["stopped_early"] == a["stopped_early"]
    assert [e["dev"]["accuracy"] for e in b["epochs"]] == [e["dev"]["accuracy"] for e in a["epochs"]]
    wa, wb = (load_file(tmp_path / d / "model.safetensors") for d in ("whole", "parts"))
    for key, value in wa.items():
        torch.testing.assert_close(wb[key], value, rtol=0, atol=1e-6)
    assert (tmp_path / "bad_parts.tsv").read_text() == (tmp_path / "bad_whole.tsv").read_text()
    assert [p.name for p in (tmp_path / "parts" / "checkpoint").iterdir() if p.is_dir()] == ["global_step18"]

    # PaddleNLP's prediction: header-less data.txt in, header-less label names out
    pred = run_job([*UER_DS, "infer", "classifier", "--load_model_path", str(tmp_path / "whole"), "--vocab_path",
                    str(CORPORA / "vocab.txt"), "--test_path", str(paddle_files / "data.txt"), "--prediction_path",
                    str(tmp_path / "pred.txt"), "--output_prob", "--no_progress"])
    assert pred.returncode == 0, pred.stdout
    lines = (tmp_path / "pred.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 20 and all(line.split("\t")[0] in ("负面", "正面") for line in lines)
    probs = np.array([[float(v) for v in line.split("\t")[1].split()] for line in lines])
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert [line.split("\t")[0] for line in lines] == [("负面", "正面")[i] for i in probs.argmax(1)]

    # resuming with other settings is refused, naming the difference
    other = run_job([*UER_DS, "finetune", "classifier", *parts, "--resume", "--learning_rate", "5e-4"])
    assert other.returncode == 1 and "--resume: learning_rate is 0.0005 now but 0.001 in the run" in other.stdout


@pytest.mark.slow
@pytest.mark.usefixtures("deepspeed_ops")
def test_multi_label_classifier_end_to_end(paddle_files, tmp_path):
    out = tmp_path / "ml"
    job = run_job([*UER_DS, "finetune", "multi_label_classifier", *finetune_args(
        paddle_files, out, "--epochs_num", "3", "--metrics_path", str(tmp_path / "m.jsonl"), train="train_multi.txt",
        dev="dev_multi.txt", label="label_multi.txt")])
    assert job.returncode == 0, job.stdout[-3000:]
    _, dev = records(tmp_path / "m.jsonl")
    assert {"micro_f1", "macro_f1", "accuracy"} <= set(dev[-1]) and "micro-F1" in job.stdout
    pred = run_job([*UER_DS, "infer", "multi_label_classifier", "--load_model_path", str(out), "--vocab_path",
                    str(CORPORA / "vocab.txt"), "--test_path", str(paddle_files / "dev_multi.txt"), "--prediction_path",
                    str(tmp_path / "pred.txt"), "--output_prob", "--no_progress"])
    assert pred.returncode == 0, pred.stdout
    lines = (tmp_path / "pred.txt").read_text(encoding="utf-8").splitlines()
    names = ["负面", "正面", "长文", "英文"]
    gold = [line.split("\t")[1].split(",") for line in (paddle_files / "dev_multi.txt").read_text(
        encoding="utf-8").splitlines()]
    predicted = []
    for line in lines:  # the labels written are those whose probability is above 0.5
        labels, probs = line.split("\t")
        probs = [float(v) for v in probs.split()]
        assert [n for n, p in zip(names, probs) if p > 0.5] == (labels.split(",") if labels else [])
        predicted.append(set(labels.split(",")) if labels else set())
    micro = multi_label_metrics(np.array([[n in g for n in names] for g in gold]),
                                np.array([[n in p for n in names] for p in predicted]))["micro_f1"]
    best = json.loads((out / "report.json").read_text())["best"]["dev"]
    assert micro == pytest.approx(best["micro_f1"], abs=1e-9)  # the prediction file scores as the run reported
