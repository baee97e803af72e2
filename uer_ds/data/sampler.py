"""ShardedSampler: each rank's share of a (shuffled) epoch, computed without a permutation array.

The epoch's order is a pseudo-random permutation of range(num_samples) given by a keyed Feistel
network with cycle walking (a bijection computed index by index), so memory is O(1) in
num_samples and any rank can start anywhere.  Global position g of the epoch goes to rank
g % world_size; with drop_last the epoch has num_samples // world_size * world_size positions,
otherwise it is padded to a multiple of world_size by wrapping around.

Resume: `start` is the number of samples the whole job (all ranks together) has consumed in the
epoch - Megatron's consumed_samples; iteration begins there, rank r taking positions start + r,
start + r + world_size, ..., so the epoch continues with the same samples in the same order
whatever the batch size or the number of ranks now (any start in [0, total]).  Give it to the
constructor or to set_epoch(epoch, start); state_dict(consumed_samples) / load_state_dict(state)
carry it with a check that the dataset size and seed are unchanged.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch.utils.data

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class FeistelPermutation:
    """A keyed bijection of range(n)."""

    ROUNDS = 6

    def __init__(self, n: int, seed: int, epoch: int) -> None:
        self.n = n
        bits = max(2, int(n - 1).bit_length())
        self.half = (bits + 1) // 2
        self.mask = np.uint64((1 << self.half) - 1)
        base = int(_mix(np.array([(seed * 0x9E3779B97F4A7C15 + epoch) & 0xFFFFFFFFFFFFFFFF], np.uint64))[0])
        self.keys = [np.uint64((base + 0x632BE59BD9B4E019 * (r + 1)) & 0xFFFFFFFFFFFFFFFF) for r in range(self.ROUNDS)]

    def _once(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> np.uint64(self.half), x & self.mask
        for key in self.keys:
            left, right = right, left ^ (_mix(right ^ key) & self.mask)
        return (left << np.uint64(self.half)) | right

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            x = self._once(positions.astype(np.uint64))
            outside = x >= np.uint64(self.n)
            while outside.any():  # cycle walking: the domain is < 4 n, so a few rounds at most on average
                x[outside] = self._once(x[outside])
                outside = x >= np.uint64(self.n)
        return x.astype(np.int64)


class ShardedSampler(torch.utils.data.Sampler):
    """Indices of one rank: ShardedSampler(num_samples, rank, world_size, seed, shuffle=True,
    drop_last=True, start=0); set_epoch(epoch, start=0) before each epoch."""

    BLOCK = 8192

    def __init__(self, num_samples: int, rank: int, world_size: int, seed: int, shuffle: bool = True,
                 drop_last: bool = True, start: int = 0) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples has value {num_samples}: the dataset is empty")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} must be in [0, world_size {world_size})")
        self.num_samples, self.rank, self.world_size = num_samples, rank, world_size
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.epoch = 0
        self._set_start(start)

    @property
    def total(self) -> int:
        """Positions in an epoch, all ranks together."""
        w = self.world_size
        return self.num_samples // w * w if self.drop_last else -(-self.num_samples // w) * w

    def _set_start(self, start: int) -> None:
        if not 0 <= start <= self.total:
            raise ValueError(f"start has value {start}: must be in [0, {self.total}] (the epoch's positions)")
        self.start = start

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch = epoch
        self._set_start(start)

    def __len__(self) -> int:
        return len(range(self.start + self.rank, self.total, self.world_size))

    def __iter__(self) -> Iterator[int]:
        perm = FeistelPermutation(self.num_samples, self.seed, self.epoch) if self.shuffle else None
        for block in range(self.start + self.rank, self.total, self.BLOCK * self.world_size):
            positions = np.arange(block, min(self.total, block + self.BLOCK * self.world_size), self.world_size)
            positions %= self.num_samples  # wrap-around padding (drop_last=False)
            indices = perm(positions) if perm is not None else positions
            yield from indices.tolist()

    def state_dict(self, consumed_samples: int) -> dict:
        return {"epoch": self.epoch, "consumed_samples": consumed_samples, "num_samples": self.num_samples,
                "seed": self.seed, "shuffle": self.shuffle, "drop_last": self.drop_last}

    def load_state_dict(self, state: dict) -> None:
        for key in ("num_samples", "seed", "shuffle", "drop_last"):
            if state[key] != getattr(self, key):
                raise ValueError(f"sampler state has {key} {state[key]}, this sampler {getattr(self, key)}: "
                                 "the data or the settings changed since the checkpoint")
        self.set_epoch(state["epoch"], state["consumed_samples"])
