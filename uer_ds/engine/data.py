"""Batches for the training loop: each data-parallel rank reads only its own shard, epoch after epoch,
and a resumed run continues from the samples the checkpoint had consumed.

The data stream is a sequence of epochs; each epoch is a permutation of the dataset (seed, epoch)
that the job consumes front to back, one global micro-batch (batch_size x data-parallel ranks
samples) at a time, rank r taking every r-th sample (data.ShardedSampler).  An epoch ends when what
is left cannot fill a global micro-batch.  Where the stream stands is a DataPosition: the epoch and
the samples of it consumed (Megatron's consumed_samples, counted in the epoch).  A checkpoint saves
it, so a resumed run starts at the next unseen sample whatever its batch size, accumulation or
number of ranks: no sample of that epoch is skipped and none is trained twice.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterator, Mapping, Union

import torch
from torch.utils.data import DataLoader

from uer_ds.config import TrainConfig


@dataclass(frozen=True)
class DataPosition:
    """epoch: the epoch the stream is in; in_epoch: its samples consumed by all ranks together;
    consumed_samples: samples consumed since training began (all epochs, all ranks)."""

    epoch: int = 0
    in_epoch: int = 0
    consumed_samples: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def micro_batches_left(num_samples: int, in_epoch: int, batch_size: int, dp_size: int) -> int:
    """Global micro-batches the epoch still holds from position in_epoch: every rank takes batch_size
    samples of the epoch's num_samples // dp_size * dp_size positions (the sampler's drop_last)."""
    total = num_samples // dp_size * dp_size
    return max(0, total - in_epoch) // (batch_size * dp_size)


def advance(position: DataPosition, micro_batches: int, batch_size: int, dp_size: int,
            num_samples: int) -> DataPosition:
    """The position after `micro_batches` more global micro-batches of batch_size per rank on dp_size
    ranks; what batch_iterator yields from `position` consumes exactly this (one rule, two users)."""
    epoch, in_epoch, consumed = position.epoch, position.in_epoch, position.consumed_samples
    per_batch = batch_size * dp_size
    if micro_batches_left(num_samples, 0, batch_size, dp_size) == 0:
        raise ValueError(f"the dataset has {num_samples} instances: too few for {dp_size} rank(s) x "
                         f"batch_size {batch_size}")
    while micro_batches > 0:
        left = micro_batches_left(num_samples, in_epoch, batch_size, dp_size)
        if left == 0:
            epoch, in_epoch = epoch + 1, 0
            continue
        take = min(left, micro_batches)
        in_epoch += take * per_batch
        consumed += take * per_batch
        micro_batches -= take
    if micro_batches_left(num_samples, in_epoch, batch_size, dp_size) == 0:  # at an epoch's unfillable tail
        epoch, in_epoch = epoch + 1, 0
    return DataPosition(epoch, in_epoch, consumed)


def position_from_state(state: Mapping, num_samples: int) -> DataPosition:
    """The DataPosition a checkpoint's uer_ds.json records (`data_position`); checkpoints written
    before positions were recorded count micro-batches per rank of their own batch and world size."""
    saved = state.get("data_position") or {}
    if "epoch" in saved:
        return DataPosition(int(saved["epoch"]), int(saved["in_epoch"]), int(saved["consumed_samples"]))
    if "micro_batches_per_rank" in saved:
        dp_size = int(state.get("world_size", 1)) // int(state.get("pipeline_stages", 1))
        return advance(DataPosition(), int(saved["micro_batches_per_rank"]), int(saved["batch_size"]), dp_size,
                       num_samples)
    raise ValueError("the checkpoint records no data position (uer_ds.json has no 'data_position')")


def batch_iterator(dataset, train: TrainConfig, dp_rank: int, dp_size: int,
                   start: Union[DataPosition, int, None] = None, num_workers: int = 1) -> Iterator[dict]:
    """Endless collated micro-batches for this rank, from `start` on (see the module docstring; None or
    0: the beginning).

    The dataset is deterministic in (seed, epoch, index) and the sampler in (seed, epoch, position),
    so the samples after a resume are those an uninterrupted run would have drawn next.  Skipping
    works on positions only; no skipped instance is built.
    """
    from uer_ds.data import ShardedSampler

    if not isinstance(start, DataPosition):
        if start:  # an int was once a step count: refuse it rather than start somewhere else
            raise TypeError(f"start must be a DataPosition (or None / 0 for the beginning), not {start!r}")
        start = DataPosition()
    epoch, in_epoch = start.epoch, start.in_epoch
    advance(start, 0, train.batch_size, dp_size, len(dataset))  # too small a dataset: an error, not a hang
    while True:
        count = micro_batches_left(len(dataset), in_epoch, train.batch_size, dp_size)
        if count:
            sampler = ShardedSampler(len(dataset), dp_rank, dp_size, seed=train.seed, shuffle=True, drop_last=True,
                                     start=in_epoch)
            sampler.set_epoch(epoch, in_epoch)
            dataset.set_epoch(epoch)
            indices = list(sampler)[: count * train.batch_size]  # the same count on every rank
            # its own generator: creating a loader must not draw from the global RNG that dropout uses,
            # or a resumed run (which creates one mid-epoch) would drift from an uninterrupted one
            generator = torch.Generator().manual_seed(train.seed * 1_000_003 + epoch)
            # pinned host memory on CUDA: the step's copies to the device then run asynchronously
            loader = DataLoader(dataset, batch_size=train.batch_size, sampler=indices, collate_fn=dataset.collate,
                                num_workers=num_workers, drop_last=True, generator=generator,
                                pin_memory=torch.cuda.is_available())
            yield from loader
        epoch, in_epoch = epoch + 1, 0
