"""Batches for the training loop: each data-parallel rank reads only its own shard, epoch after epoch,
and a resumed run starts exactly where the checkpoint's step left off."""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader

from uer_ds.config import TrainConfig


def batch_iterator(dataset, train: TrainConfig, dp_rank: int, dp_size: int, start_step: int = 0,
                   num_workers: int = 1) -> Iterator[dict]:
    """Endless collated micro-batches for this rank, skipping the start_step steps already trained.

    The dataset is deterministic in (seed, epoch, index) and the sampler in (seed, epoch, rank), so the
    micro-batch after a resume equals the one an uninterrupted run would have drawn.  Skipping works on
    indices only; no skipped instance is built.
    """
    from uer_ds.data import ShardedSampler

    skip = start_step * train.accumulation_steps  # micro-batches this rank already consumed
    epoch = 0
    while True:
        sampler = ShardedSampler(len(dataset), dp_rank, dp_size, seed=train.seed, shuffle=True, drop_last=True)
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        indices = list(sampler)
        per_epoch = len(indices) // train.batch_size
        if per_epoch == 0:
            raise ValueError(f"the dataset has {len(dataset)} instances: too few for {dp_size} rank(s) x "
                             f"batch_size {train.batch_size}")
        if skip >= per_epoch:
            skip -= per_epoch
            epoch += 1
            continue
        indices = indices[skip * train.batch_size: per_epoch * train.batch_size]
        skip = 0
        # its own generator: creating a loader must not draw from the global RNG that dropout uses,
        # or a resumed run (which creates one mid-epoch) would drift from an uninterrupted one
        generator = torch.Generator().manual_seed(train.seed * 1_000_003 + epoch)
        # pinned host memory on CUDA: the step's copies to the device then run asynchronously
        loader = DataLoader(dataset, batch_size=train.batch_size, sampler=indices, collate_fn=dataset.collate,
                            num_workers=num_workers, drop_last=True, generator=generator,
                            pin_memory=torch.cuda.is_available())
        yield from loader
        epoch += 1
