"""Engine pieces that need no process group: schedules, weight-decay groups, activation checkpointing,
the loss normalisation over the global batch (the NaN guard: tests/tasks/test_task_loop.py)."""
from __future__ import annotations

import math

import pytest
import torch

from uer_ds.config import ModelConfig, TrainConfig
from uer_ds.engine.engine import lr_lambda, parameter_groups
from uer_ds.engine.recompute import apply_activation_checkpointing
from uer_ds.models import build_model


def test_schedules_match_hugging_face_definitions():
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    p = torch.nn.Parameter(torch.zeros(1))
    for name, reference in (("linear", get_linear_schedule_with_warmup), ("cosine", get_cosine_schedule_with_warmup)):
        train = TrainConfig(total_steps=50, warmup=0.2, scheduler=name)
        ours = lr_lambda(train)
        theirs = reference(torch.optim.SGD([p], lr=1.0), num_warmup_steps=10, num_training_steps=50)
        for step in range(51):
            assert ours(step) == pytest.approx(theirs.lr_lambdas[0](step), abs=1e-12), (name, step)
    constant = lr_lambda(TrainConfig(total_steps=50, warmup=0.2, scheduler="constant_with_warmup"))
    assert [constant(s) for s in (0, 5, 10, 49)] == [0.0, 0.5, 1.0, 1.0]


def test_weight_decay_groups_by_dimension():
    model = build_model(ModelConfig.from_json("bert/tiny", {"vocab_size": 50}))
    decay, no_decay = parameter_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_activation_checkpointing_changes_memory_not_results():
    torch.manual_seed(0)
    cfg = ModelConfig.from_json("bert/tiny", {"vocab_size": 60, "dropout": 0.0, "target": ["mlm"],
                                              "data_processor": "mlm"})
    model = build_model(cfg)
    src = torch.randint(5, 60, (2, 10))
    seg = torch.ones_like(src)
    tgt = torch.where(torch.rand(2, 10) < 0.5, src, -100)
    tgt[0, 0] = src[0, 0]
    grads = []
    for checkpointing in (False, True):
        model.zero_grad()
        if checkpointing:  # the second pass: the engine's wrapper on the same model
            apply_activation_checkpointing(model)
        loss = model(src, tgt, seg).loss
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
    assert grads[0][0] == grads[1][0]
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    assert math.isfinite(grads[0][0])


def test_losses_are_normalised_over_the_global_batch_however_it_is_split():
    """1 x 8, 1 x 4 x 2 accumulation, 2 ranks x 4 and 2 ranks x 2 x 2 give the loss and the gradients of one
    forward over all 8 samples (the mean over all their predictions, per target), within 1e-6 relative
    in fp32.  Ranks are simulated: each rank's gradient is the sum over its micro-batches of the trained
    loss / accumulation steps (DeepSpeed's scaling), then averaged over ranks (its all-reduce)."""
    import numpy as np

    from uer_ds.data.batch import collate
    from uer_ds.engine.engine import loss_weights, stats_vector

    torch.manual_seed(0)
    cfg = ModelConfig.from_json("bert/tiny", {"vocab_size": 50, "dropout": 0.0, "hidden_size": 32, "emb_size": 32,
                                              "feedforward_size": 64, "heads_num": 4})
    model = build_model(cfg)
    rng = np.random.default_rng(1)
    instances = []
    for i in range(8):  # masked counts from 1 to 8: a plain mean of micro-batch means would weigh them wrongly
        length = 12 - i % 3
        seg = np.zeros(12, np.int64)
        seg[:length] = 1 + (np.arange(length) >= length // 2)
        src = rng.integers(5, 50, 12) * (seg > 0)
        mlm = np.full(12, -100)
        where = rng.choice(length, size=1 + i, replace=False)
        mlm[where] = src[where]
        instances.append({"src": src, "seg": seg, "tgt": {"mlm": mlm, "sp": np.int64(i % 2)}})

    def run(batches_per_rank: list[list[dict]]) -> tuple[float, list[torch.Tensor]]:
        names, dp = ("mlm", "sp"), len(batches_per_rank)
        counts = [sum(b["info"].predictions[n] for rank in batches_per_rank for b in rank) for n in names]
        model.zero_grad()
        loss = 0.0
        for rank in batches_per_rank:
            weights = loss_weights([b["info"] for b in rank], names, counts, dp)
            for batch, w in zip(rank, weights):
                result = model(batch["src"], batch["tgt"], batch["seg"], padded=batch["info"].padded)
                total, vector = stats_vector(result, w, names, torch.zeros((), dtype=torch.float64))
                (total * len(rank) * dp / len(rank) / dp).backward()  # x gas x dp; DeepSpeed: / gas, mean over dp
                loss += float(vector[0])
        return loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    def split(ranks: int, micro: int) -> list[list[dict]]:
        size = 8 // (ranks * micro)
        return [[collate(instances[(m * ranks + r) * size:(m * ranks + r + 1) * size], picked={"mlm": 12})
                 for m in range(micro)] for r in range(ranks)]

    full = collate(instances, picked={"mlm": 12})
    model.zero_grad()
    expected = model(full["src"], full["tgt"], full["seg"])
    expected.loss.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    for ranks, micro in ((1, 1), (1, 2), (2, 1), (2, 2), (1, 8)):
        loss, grads = run(split(ranks, micro))
        assert loss == pytest.approx(float(expected.loss.detach()), rel=1e-6), (ranks, micro)
        assert grads.keys() == want.keys()
        got_all = torch.cat([grads[n].reshape(-1) for n in want])
        want_all = torch.cat([b.reshape(-1) for b in want.values()])
        # the whole gradient within 1e-6 relative (some entries are zero up to rounding: the attention
        # keys' biases cancel in the softmax, so a per-entry relative bound would measure noise)
        assert float((got_all - want_all).norm() / want_all.norm()) < 1e-6, (ranks, micro)
        torch.testing.assert_close(got_all, want_all, rtol=0, atol=1e-6 * float(want_all.abs().max()))
    # the plain average of micro-batch means (what DeepSpeed does without counts) is not the same loss
    plain = loss_weights([b["info"] for b in split(1, 2)[0]], ("mlm", "sp"), None, 1)
    assert plain == [{"mlm": 0.5, "sp": 0.5}] * 2
