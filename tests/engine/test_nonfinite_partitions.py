"""Engine.nonfinite_parameters under ZeRO-3 reads each rank's partition without its padding.

DeepSpeed pads every parameter's flat partition to ceil(numel / world) elements on every rank; the
padding of the last rank(s) is allocated, never written, and may hold anything, NaN included (seen: a
3-host ZeRO-3 run stopped with "1 weight tensor(s) hold NaN or inf" on finite weights).  The partitions
here are made by hand the way DeepSpeed lays them out (rank r holds elements [r*P, (r+1)*P) of the
flattened parameter), so the test needs no process group.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from uer_ds.engine.engine import Engine


def partitioned(values: torch.Tensor, world: int, rank: int, padding: float) -> torch.nn.Parameter:
    size = math.ceil(values.numel() / world)
    flat = torch.full((size * world,), padding)
    flat[:values.numel()] = values.flatten()
    param = torch.nn.Parameter(torch.empty(0))  # ZeRO-3's placeholder
    param.ds_tensor = flat[rank * size:(rank + 1) * size].clone()
    param.ds_numel, param.ds_process_group = values.numel(), f"group-of-{world}"
    return param


@pytest.mark.parametrize("world", [2, 3, 4])
def test_the_padding_of_a_partition_is_not_a_weight(world, monkeypatch):
    weights = torch.arange(10, dtype=torch.float32)  # 10 elements: padded on 3 and 4 ranks
    for rank in range(world):
        monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None, rank=rank: rank)
        fake = SimpleNamespace(ds=SimpleNamespace(module=torch.nn.ParameterList(
            [partitioned(weights, world, rank, padding=math.nan)])), device=torch.device("cpu"))
        assert float(Engine.nonfinite_parameters(fake)) == 0, (world, rank)
        broken = weights.clone()
        broken[9] = math.inf  # the last real element, on the last rank that holds real elements
        fake.ds.module = torch.nn.ParameterList([partitioned(broken, world, rank, padding=0.0)])
        holds_it = rank * math.ceil(10 / world) <= 9 < (rank + 1) * math.ceil(10 / world)
        assert float(Engine.nonfinite_parameters(fake)) == (1 if holds_it else 0), (world, rank)
