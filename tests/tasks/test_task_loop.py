"""The shared training loop's evaluation hook: evaluation every epoch, best-model keeping, early
stopping with patience (an engine stand-in: no DeepSpeed in the test process)."""
from __future__ import annotations

import json

import pytest
import torch

from uer_ds.config import TrainConfig
from uer_ds.engine.engine import StepStats
from uer_ds.train import EarlyStopping, Evaluation, Reporter, train


class CountingEngine:
    grad_norm, loss_scale, skipped_steps = 0.0, None, 0
    device = torch.device("cpu")

    def __init__(self) -> None:
        self.steps = []
        self.weights = torch.zeros(3)  # what nonfinite_parameters inspects
        self.checked = []  # the steps whose weights were inspected

    def nonfinite_parameters(self) -> torch.Tensor:
        self.checked.append(self.steps[-1])
        return (~torch.isfinite(self.weights)).any().to(torch.float64)

    def train_step(self, batches, step):
        self.steps.append(step)
        values = torch.tensor([float(len(batches)), 0.0, 0.0, 0.0], dtype=torch.float64)  # loss; ("loss",): 3 zeros
        return StepStats(values=values, bad_step=torch.tensor(float("inf")), samples=len(batches), lr=0.1)


def endless():
    while True:
        yield {}


def test_early_stopping_counts_evaluations_without_improvement():
    stop = EarlyStopping("accuracy", patience=2)
    assert [stop.update(v, s) for s, v in enumerate([0.5, 0.7, 0.7, 0.69])] == [True, True, False, False]
    assert stop.should_stop and stop.best == 0.7 and stop.best_step == 1
    loss = EarlyStopping("loss", patience=1, mode="min", min_delta=0.1)
    assert loss.update(1.0, 0) and not loss.update(0.95, 1) and loss.should_stop  # within min_delta: no gain
    never = EarlyStopping("accuracy", patience=0)
    for step in range(10):
        never.update(0.1, step)
    assert not never.should_stop
    with pytest.raises(ValueError, match="--patience has value -1"):
        EarlyStopping("accuracy", patience=-1)


def test_loop_evaluates_each_epoch_keeps_best_and_stops_early(tmp_path):
    dev = {4: 0.5, 8: 0.7, 12: 0.6, 16: 0.65, 20: 0.9}  # steps per epoch 4; patience 2 stops at step 16
    kept, saved = [], []
    evaluation = Evaluation(every_steps=4, run=lambda step: {"accuracy": dev[step], "confusion": [[1]]},
                            stopping=EarlyStopping("accuracy", patience=2), on_best=lambda s, m: kept.append(s))
    engine = CountingEngine()
    metrics = tmp_path / "m.jsonl"
    reporter = Reporter(("loss",), str(metrics), None, 20, 0, show_progress=False)
    cfg = TrainConfig(total_steps=20, report_steps=5, save_checkpoint_steps=100, accumulation_steps=2)
    train(engine, endless(), cfg, 0, reporter, saved.append, evaluation=evaluation)
    assert engine.steps == list(range(1, 17))
    assert kept == [4, 8] and evaluation.stopped_at == 16 and evaluation.stopping.best == 0.7
    assert saved == [16]  # the step it stopped at is saved (and reported)
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in rows if r.get("split") == "dev"] == [4, 8, 12, 16]
    assert [r["step"] for r in rows if "split" not in r] == [5, 10, 15, 16]
    assert rows[0]["confusion"] == [[1]]


def test_loop_without_early_stop_evaluates_at_the_last_step():
    seen = []
    evaluation = Evaluation(every_steps=3, run=lambda step: seen.append(step) or {"accuracy": step},
                            stopping=EarlyStopping("accuracy", patience=1), on_best=lambda s, m: None)
    reporter = Reporter(("loss",), None, None, 7, 0, show_progress=False)
    train(CountingEngine(), endless(), TrainConfig(total_steps=7, report_steps=100, save_checkpoint_steps=100), 0,
          reporter, lambda step: None, evaluation=evaluation)
    assert seen == [3, 6, 7] and evaluation.stopped_at is None


def test_a_nan_loss_stops_training_at_the_next_report_naming_its_step():
    """The step never reads the loss back; the report after it does, and names the first bad step."""

    class NanAtStep3(CountingEngine):
        device = torch.device("cpu")

        def train_step(self, batches, step):
            stats = super().train_step(batches, step)
            if step >= 3:
                stats.values[0] = float("nan")
                stats.bad_step = torch.tensor(3.0 if step == 3 else float(step))
            return stats

    engine = NanAtStep3()
    reporter = Reporter(("loss",), None, None, 20, 0, show_progress=False)
    cfg = TrainConfig(total_steps=20, report_steps=5, save_checkpoint_steps=100)
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 3 \(found at the report of step 5\): "
                                                 r"training stopped. Lower --learning_rate"):
        train(engine, endless(), cfg, 0, reporter, lambda step: None)
    assert engine.steps == [1, 2, 3, 4, 5]


def test_a_diverged_model_is_never_evaluated_saved_or_kept_as_best():
    """Issue 30: weights that turned NaN inside an epoch (finite loss at the steps reported) stop the run
    before the next evaluation and the next save, naming the step; the best model stays the finite one of
    the epoch before.  The weights are inspected at save and evaluation steps only, never in between."""
    dev = {4: 0.5, 8: 0.7, 12: 0.9}
    kept, saved = [], []
    evaluation = Evaluation(every_steps=4, run=lambda step: {"accuracy": dev[step]},
                            stopping=EarlyStopping("accuracy"), on_best=lambda s, m: kept.append(s))
    engine = CountingEngine()

    def diverge(step: int) -> None:
        if step == 6:
            engine.weights[1] = float("nan")

    reporter = Reporter(("loss",), None, None, 12, 0, show_progress=False)
    cfg = TrainConfig(total_steps=12, report_steps=100, save_checkpoint_steps=2)
    with pytest.raises(FloatingPointError, match=r"1 weight tensor\(s\) hold NaN or inf after step 8: training "
                                                 r"stopped before the save, nothing of that step saved"):
        train(engine, endless(), cfg, 0, reporter, saved.append, on_step=diverge, evaluation=evaluation)
    assert kept == [4] and saved == [2, 4, 6] and engine.checked == [2, 4, 6, 8]


def test_a_nan_loss_between_reports_stops_before_the_evaluation():
    """A NaN loss at step 6 with reports every 100 steps: found at the evaluation of step 8 (one host read
    there), not evaluated, not kept."""

    class NanFromStep6(CountingEngine):
        def train_step(self, batches, step):
            stats = super().train_step(batches, step)
            if step >= 6:
                stats.values[0] = float("nan")
                stats.bad_step = torch.tensor(float(step))
            return stats

    kept = []
    evaluation = Evaluation(every_steps=4, run=lambda step: {"accuracy": 0.5 + step / 100},
                            stopping=EarlyStopping("accuracy"), on_best=lambda s, m: kept.append(s))
    reporter = Reporter(("loss",), None, None, 12, 0, show_progress=False)
    with pytest.raises(FloatingPointError, match=r"the loss is not finite \(NaN or inf\) at step 6, found before "
                                                 r"the evaluation of step 8: training stopped"):
        train(NanFromStep6(), endless(), TrainConfig(total_steps=12, report_steps=100, save_checkpoint_steps=100), 0,
              reporter, lambda step: None, evaluation=evaluation)
    assert kept == [4]
