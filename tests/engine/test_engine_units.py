"""Engine pieces that need no process group: schedules, weight-decay groups, the NaN guard,
activation checkpointing."""
from __future__ import annotations

import math

import pytest
import torch

from uer_ds.config import ModelConfig, TrainConfig
from uer_ds.engine.engine import _check_finite, lr_lambda, parameter_groups
from uer_ds.models import TargetResult, build_model


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


def test_a_nan_loss_stops_training_with_a_message():
    nan = TargetResult(torch.tensor(float("nan")), torch.tensor(0), torch.tensor(1))
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 7 on rank 0: training stopped. Lower"):
        _check_finite(nan, 7)
    _check_finite(TargetResult(torch.tensor(1.5), torch.tensor(0), torch.tensor(1)), 7)


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
        model.encoder.activation_checkpointing = checkpointing
        loss = model(src, tgt, seg).loss
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
    assert grads[0][0] == grads[1][0]
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    assert math.isfinite(grads[0][0])
