"""recipes.predict.mean_loss, fine-tuning's dev loss: the loss per prediction over a dev set, each example
counted once over the ranks (eval_batches deals batches and fills a short rank with a repeated example),
against plain PyTorch cross-entropy over all examples at once."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from uer_ds.models.targets.base import classification_result
from uer_ds.recipes.predict import mean_loss
from uer_ds.tasks.data import Example

torch.manual_seed(0)
EMBEDDING = torch.randn(50, 8, dtype=torch.float64)
OUTPUT = torch.randn(8, 3, dtype=torch.float64)
FP32 = 1e-6  # classification_result takes the cross-entropy of float32 logits; the reference is float64


def examples(n: int, seed: int) -> list[Example]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = int(torch.randint(2, 9, (1,), generator=g))
        src = torch.randint(1, 50, (length,), generator=g).tolist()
        out.append(Example(f"dev.tsv:{i + 2}", {"text_a": "-"}, src, [1] * length, int(torch.randint(0, 3, (1,),
                                                                                                      generator=g))))
    return out


def logits_of(src: list[int]) -> torch.Tensor:
    return EMBEDDING[src].mean(0) @ OUTPUT


def collate(batch: list[Example], head: int) -> dict:
    return {"src": [e.src for e in batch], "tgt": torch.tensor([e.tgt for e in batch]), "head": head}


def loss_forward(batch: dict):
    """The training objective of the toy model: mean cross-entropy over the batch (TargetResult)."""
    return classification_result(torch.stack([logits_of(s) for s in batch["src"]]), batch["tgt"])


def reference(datasets) -> float:
    rows = [e for ds in datasets if ds is not None for e in ds]
    logits = torch.stack([logits_of(e.src) for e in rows])
    return float(F.cross_entropy(logits, torch.tensor([e.tgt for e in rows])))


@pytest.mark.parametrize("n, batch_size", [(7, 3), (1, 4), (16, 16)])
def test_one_process_equals_cross_entropy_over_all_examples(n, batch_size):
    dev = [examples(n, seed=n)]
    assert mean_loss(loss_forward, dev, collate, batch_size) == pytest.approx(reference(dev), rel=FP32)


def test_several_heads_and_a_head_without_dev_data():
    dev = [examples(5, 1), None, examples(9, 2)]
    assert mean_loss(loss_forward, dev, collate, 4) == pytest.approx(reference(dev), rel=FP32)
    assert mean_loss(loss_forward, [None], collate, 4) == 0.0


@pytest.mark.parametrize("n, batch_size, world", [(5, 2, 2), (3, 1, 4), (11, 2, 3), (2, 8, 3)])
def test_ranks_count_each_example_once(monkeypatch, n, batch_size, world):
    """Each rank's sum and count go into one all-reduce; filler batches (a rank short of examples repeats
    one, or takes another rank's) must weigh nothing, else the mean is off."""
    dev = [examples(n, seed=10 + n)]
    parts, forwards = [], []
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t: parts.append(t.clone()))
    for rank in range(world):
        calls = []
        mean_loss(lambda b: calls.append(1) or loss_forward(b), dev, collate, batch_size, rank, world)
        forwards.append(len(calls))
    assert len(set(forwards)) == 1  # every rank runs the same number of forwards (ZeRO-3)
    loss_sum, count = sum(parts).tolist()
    assert count == n
    assert loss_sum / count == pytest.approx(reference(dev), rel=FP32)
