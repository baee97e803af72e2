"""Resume without a process group: the data position a checkpoint records and where a resumed run starts
(whatever its batch size, accumulation or number of ranks), the checks of a --resume against the
checkpoint, and the checkpoint locations every command takes."""
from __future__ import annotations

import itertools
import json

import pytest

from uer_ds.config import ModelConfig, TrainConfig
from uer_ds.data import ShardedSampler
from uer_ds.engine import checkpoint as ckpt
from uer_ds.engine.data import DataPosition, advance, batch_iterator, micro_batches_left, position_from_state


class Indices:
    """A dataset whose sample i is i (what batch_iterator needs: len, getitem, set_epoch, collate)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i

    def set_epoch(self, epoch: int) -> None:
        pass

    @staticmethod
    def collate(items: list) -> list:
        return list(items)


def epoch_order(n: int, seed: int, epoch: int, world: int) -> list[int]:
    sampler = ShardedSampler(n, 0, 1, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)[: n // world * world]


def take(dataset, train, world, start, micro_batches):
    """The global micro-batches (ranks' samples interleaved as positions go) of a job of `world` ranks."""
    iters = [batch_iterator(dataset, train, r, world, start, num_workers=0) for r in range(world)]
    out = []
    for _ in range(micro_batches):
        parts = [next(it) for it in iters]
        out.append([parts[g % world][g // world] for g in range(train.batch_size * world)])
    return out


def test_issue_case_a_larger_batch_after_resume_skips_no_sample():
    """Checkpoint at step 2 with batch 4, resumed with batch 8: the resumed run starts at sample 8 of
    the epoch (it skipped 2 batches of the new size, samples 8-15, before)."""
    n, seed = 100, 5
    data = Indices(n)
    order = epoch_order(n, seed, 0, 1)
    first = take(data, TrainConfig(batch_size=4, seed=seed), 1, None, 2)
    position = advance(DataPosition(), 2, 4, 1, n)
    assert position == DataPosition(0, 8, 8)
    second = take(data, TrainConfig(batch_size=8, seed=seed), 1, position, 3)
    assert [i for b in first + second for i in b] == order[:32]


@pytest.mark.parametrize("before, after", [((4, 1, 1), (8, 2, 1)), ((3, 2, 2), (5, 1, 3)), ((8, 1, 1), (4, 1, 2))])
def test_any_batch_accumulation_and_world_continue_the_same_stream(before, after):
    """(batch, accumulation, ranks) before and after a resume: the samples consumed, epoch after epoch,
    are each epoch's permutation in order, none twice, none skipped but an epoch's unfillable tail."""
    n, seed = 53, 11
    data = Indices(n)
    b1, a1, w1 = before
    b2, a2, w2 = after
    steps1 = 7  # crosses into the second epoch for every case
    got = take(data, TrainConfig(batch_size=b1, accumulation_steps=a1, seed=seed), w1, None, steps1 * a1)
    position = advance(DataPosition(), steps1 * a1, b1, w1, n)
    assert position.consumed_samples == steps1 * a1 * b1 * w1
    got += take(data, TrainConfig(batch_size=b2, accumulation_steps=a2, seed=seed), w2, position, 9 * a2)
    # rebuild the expected stream: per epoch, the permutation cut where the running job's batch stops fitting
    expected, epoch, at = [], 0, 0
    for batch in got:
        size = len(batch)
        world = w1 if len(expected) < steps1 * a1 else w2
        if micro_batches_left(n, at, size // world, world) == 0:
            epoch, at = epoch + 1, 0
        expected.append(epoch_order(n, seed, epoch, 1)[at: at + size])
        at += size
    assert got == expected
    assert epoch >= 2


def test_advance_is_what_the_iterator_consumes():
    n, data, train = 37, Indices(37), TrainConfig(batch_size=3, seed=2)
    position = DataPosition()
    for k in (1, 4, 5, 2, 11):
        position = advance(position, k, 3, 2, n)
        fresh = take(data, train, 2, position, 1)[0]
        whole = list(itertools.chain.from_iterable(take(data, train, 2, None, 200)))
        assert fresh == whole[position.consumed_samples: position.consumed_samples + 6]
    with pytest.raises(ValueError, match="the dataset has 5 instances: too few for 2 rank"):
        advance(DataPosition(), 1, 3, 2, 5)


def test_old_checkpoints_position_from_micro_batches_per_rank():
    state = {"world_size": 2, "pipeline_stages": 1, "data_position": {"micro_batches_per_rank": 13, "batch_size": 8}}
    assert position_from_state(state, 100) == DataPosition(2, 16, 208)  # 6 micro-batches of 16 per epoch of 100
    state["data_position"]["micro_batches_per_rank"] = 12
    assert position_from_state(state, 100) == DataPosition(2, 0, 192)  # an epoch's tail: the next one begins
    new = {"data_position": {"epoch": 3, "in_epoch": 40, "consumed_samples": 1000, "batch_size": 8}}
    assert position_from_state(new, 100) == DataPosition(3, 40, 1000)
    with pytest.raises(ValueError, match="records no data position"):
        position_from_state({}, 100)


# ---- what a resume checks -------------------------------------------------------------------------
def test_changed_dataset_seed_or_config_is_named_with_saved_and_given_values():
    tiny = ModelConfig.from_json("bert/tiny", {"vocab_size": 417})
    pairs = ckpt.config_changes(tiny, tiny.replace(dropout=0.0))
    assert pairs == {"model config dropout": (0.1, 0.0)}
    assert ckpt.config_changes(tiny, tiny) == {}
    pairs["--seed"] = (7, 8)
    pairs["batch"] = (4, 4)
    with pytest.raises(ValueError, match=r"^--resume: run/global_step2 differs from this run in model config dropout: "
                                         r"saved 0\.1, given 0\.0; --seed: saved 7, given 8\. Go on like this$"):
        ckpt.check_unchanged("run/global_step2", pairs, "Go on like this")


def fake_tag(tmp_path, files, world=1, stages=1):
    tag = tmp_path / "run" / "global_step2"
    tag.mkdir(parents=True)
    for name in files:
        (tag / name).write_bytes(b"")
    (tag / ckpt.METADATA).write_text(json.dumps({"step": 2, "world_size": world, "pipeline_stages": stages}))
    (tag / ckpt.CONFIG).write_text("{}")
    (tmp_path / "run" / "latest").write_text("global_step2")
    return tag


def test_another_world_size_needs_the_universal_checkpoint_only_when_states_are_partitioned(tmp_path):
    zero2 = fake_tag(tmp_path, ["mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt"])
    saved = {"world_size": 1, "pipeline_stages": 1}
    assert ckpt.resharding(zero2, saved, 2, 1) is True
    assert ckpt.resharding(zero2, saved, 1, 1) is False
    plain = fake_tag(tmp_path / "b", ["mp_rank_00_model_states.pt"])  # ZeRO-0 fp32: the optimizer is whole
    assert ckpt.resharding(plain, saved, 4, 1) is False
    with pytest.raises(ValueError, match=r"saved by 2 process\(es\) in 2 pipeline stage\(s\); this run has 4 in 2\. "
                                         r"A pipeline checkpoint resumes on the same layout only: run with 2"):
        ckpt.resharding(plain, {"world_size": 2, "pipeline_stages": 2}, 4, 2)
    assert ckpt.universal_tag(tmp_path / "run", "global_step2") is None
    (tmp_path / "run" / "global_step2_universal" / "zero").mkdir(parents=True)
    assert ckpt.universal_tag(tmp_path / "run", "global_step2") == "global_step2_universal"
