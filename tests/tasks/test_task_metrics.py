"""Classification metrics against scikit-learn and a hand-computed case; the soft-target loss and the
head against their formulas written out here; loading a pre-trained body."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from uer_ds.config import ModelConfig
from uer_ds.models import build_model
from uer_ds.tasks import ClassifierHead, TaskModel, select_pretrained, soft_target_result
from uer_ds.tasks.metrics import classification_metrics, format_classification


@pytest.mark.parametrize("labels_num, n, seed", [(2, 50, 0), (5, 200, 1), (4, 7, 2)])
def test_metrics_equal_scikit_learn(labels_num, n, seed):
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, labels_num, n)
    scores = rng.normal(size=(n, labels_num))
    scores[: n // 2, 0] += 2.0  # skew predictions so some class may never be predicted
    ours = classification_metrics(gold, scores, top_k=2)
    pred = scores.argmax(1)
    labels = list(range(labels_num))
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(gold, pred))
    assert ours["macro_f1"] == pytest.approx(sk.f1_score(gold, pred, average="macro", labels=labels, zero_division=0))
    p, r, f, s = sk.precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0)
    for c, row in enumerate(ours["per_class"]):
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx((p[c], r[c], f[c], s[c]))
    assert ours["confusion"] == sk.confusion_matrix(gold, pred, labels=labels).tolist()
    if labels_num > 2:
        assert ours["top2_accuracy"] == pytest.approx(sk.top_k_accuracy_score(gold, scores, k=2, labels=labels))
    else:
        assert "top2_accuracy" not in ours  # k >= labels_num is always 1: not reported


def test_metrics_by_hand():
    # gold 0 0 1 1 2 ; predicted 0 1 1 1 0
    scores = np.eye(3)[[0, 1, 1, 1, 0]]
    m = classification_metrics([0, 0, 1, 1, 2], scores)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    f1 = [2 * 0.5 * 0.5 / 1.0, 2 * (2 / 3) * 1.0 / (2 / 3 + 1.0), 0.0]  # class 2: never predicted -> 0
    assert [c["f1"] for c in m["per_class"]] == pytest.approx(f1)
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3)
    text = format_classification(m, "dev")
    assert "accuracy 0.6000" in text and "rows gold, columns predicted" in text


def test_soft_target_loss_is_alpha_mse_plus_one_minus_alpha_ce():
    torch.manual_seed(0)
    logits, soft = torch.randn(4, 3), torch.randn(4, 3)
    labels = torch.tensor([0, 2, 1, 2])
    alpha = 0.3
    z = logits.numpy().astype(np.float64)
    log_softmax = z - np.log(np.exp(z).sum(1, keepdims=True))
    ce = -log_softmax[np.arange(4), labels.numpy()].mean()
    mse = ((z - soft.numpy()) ** 2).mean()
    result = soft_target_result(logits, labels, soft, alpha)
    assert float(result.loss) == pytest.approx(alpha * mse + (1 - alpha) * ce, rel=1e-6)
    assert float(soft_target_result(logits, labels, None, alpha).loss) == pytest.approx(ce, rel=1e-6)
    assert int(result.correct) == int((logits.argmax(1) == labels).sum()) and int(result.denominator) == 4


def test_head_is_pool_linear_tanh_linear():
    cfg = ModelConfig.from_json("bert/tiny", {"vocab_size": 30})
    head = ClassifierHead(cfg, labels_num=3, pooling="mean")
    hidden, seg = torch.randn(2, 5, 128), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 2, 2, 2]])
    mean = torch.stack([hidden[0, :3].mean(0), hidden[1].mean(0)])
    inner = torch.tanh(mean @ head.linear_1.weight.T + head.linear_1.bias)
    expected = inner @ head.linear_2.weight.T + head.linear_2.bias
    torch.testing.assert_close(head.predict(hidden, seg), expected)


def test_pretrained_body_loads_and_pretraining_heads_are_expected_extras():
    cfg = ModelConfig.from_json("bert/tiny", {"vocab_size": 30})
    pretrained = build_model(cfg).state_dict()  # has target.mlm.* and target.sp.*
    model = TaskModel(cfg, {"classifier": ClassifierHead(cfg, 2, "first")})
    state, notes = select_pretrained(pretrained, model, "p", allow_partial=False)
    assert not any(k.startswith("target.") for k in state)
    assert {k for k in model.state_dict() if not k.startswith("target.")} == set(state)
    text = "\n".join(notes)
    assert "['mlm', 'sp']" in text and "initialised fresh: head(s) ['classifier']" in text
    # a head of another label count starts fresh instead of failing
    other = TaskModel(cfg, {"classifier": ClassifierHead(cfg, 5, "first")}).state_dict()
    state, notes = select_pretrained(other, model, "q", allow_partial=False)
    assert "target.classifier.linear_2.weight" not in state and "target.classifier.linear_1.weight" in state
    # a body that does not match is an error unless --allow_partial_load
    smaller = ModelConfig.from_json("bert/tiny", {"vocab_size": 30, "layers_num": 1})
    with pytest.raises(ValueError, match="the embedding/encoder does not match.*--allow_partial_load"):
        select_pretrained(build_model(smaller).state_dict(), model, "r", allow_partial=False)
    state, notes = select_pretrained(build_model(smaller).state_dict(), model, "r", allow_partial=True)
    assert any("missing keys ['encoder.transformer.1." in n for n in notes)
    wrong = dict(pretrained, **{"embedding.word.embedding.weight": torch.zeros(31, 128)})
    with pytest.raises(ValueError, match=r"'embedding.word.embedding.weight' has shape \(31, 128\)"):
        select_pretrained(wrong, model, "s", allow_partial=True)
