"""The host cost of a kernel call, pinned: the torch ops each public kernel issues besides its Triton
launches, forward and backward (issue 16's goal: at most 2), and no device->host read.

On a GPU every torch op is a kernel launch and some microseconds of Python; the kernels' first
wrappers issued 8 extra ops per attention call (the padding's key ranges, in every layer) and a
`.item()` per dropout seed.  Counted on the CPU: a dispatch mode records the ops around each
`uer_ds::*` operator, and the operator's own body is run again with its launches recorded instead of
run, so the ops inside it are counted too.
"""
from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

# first: sets up Triton's interpreter before any kernel import; triton_interpreter is an autouse fixture
from kernel_helpers import DEVICE, leaf, triton_interpreter  # noqa: F401

import uer_ds.kernels as kernels
from uer_ds.engine.overhead import SYNC_OPS, VIEW_OPS
from uer_ds.kernels import flash_attention, fused_layer_norm, varlen_flash_attention

MODULES = (flash_attention, fused_layer_norm, varlen_flash_attention)
OP_BUDGET = 2  # torch ops per call besides the launches, forward and backward each


class Recorder(TorchDispatchMode):
    """Records non-view aten ops by name, and the uer_ds operators with their arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter = Counter()
        self.calls: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "uer_ds":
            self.calls.append((func, args))
        elif func.overloadpacket.__name__ not in VIEW_OPS:
            self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def _inside(func, args) -> tuple[Counter, int]:
    """(torch ops, launches) of a uer_ds operator's own body, its launches recorded instead of run."""
    launches = []
    op = getattr(next(m for m in MODULES if hasattr(m, func._opname)), func._opname)
    with pytest.MonkeyPatch.context() as patch:
        for module in MODULES:
            patch.setattr(module, "launch", lambda kernel, grid, *a, **kw: launches.append(kernel))
        with Recorder() as inner:
            op.launcher(*args)
    return inner.ops, len(launches)


def _cost(forward) -> dict:
    """Per phase: torch ops outside and inside the operators, the operators called, their launches."""
    result = {}
    with Recorder() as fwd:
        out = forward()
    grad = torch.randn_like(out)
    with Recorder() as bwd:
        out.backward(grad)
    for phase, rec in (("forward", fwd), ("backward", bwd)):
        ops, launches = Counter(rec.ops), 0
        for func, args in rec.calls:
            inner, n = _inside(func, args)
            ops.update(inner)
            launches += n
        result[phase] = {"ops": ops, "operators": [f._opname for f, _ in rec.calls], "launches": launches}
    return result


def _varlen():
    g = torch.Generator().manual_seed(0)
    q, k, v = (leaf((30, 2, 16), torch.float32, g) for _ in range(3))
    cu = torch.tensor([0, 7, 30], dtype=torch.int32, device=DEVICE)
    return lambda: kernels.varlen_attention(q, k, v, cu, 23, causal=True, dropout_p=0.1), [q, k, v]


def _padded():
    g = torch.Generator().manual_seed(0)
    # the model's layout: (B, T, H, D) projections viewed as (B, H, T, D), as the kernel writes its gradients
    q, k, v = (leaf((2, 20, 2, 16), torch.float32, g) for _ in range(3))
    kpm = (torch.arange(20)[None, :] >= torch.tensor([20, 9])[:, None]).to(DEVICE)
    return lambda: kernels.attention(*(t.transpose(1, 2) for t in (q, k, v)), key_padding_mask=kpm,
                                     dropout_p=0.1), [q, k, v]


def _layer_norm():
    g = torch.Generator().manual_seed(0)
    x, r = leaf((6, 40), torch.float32, g), leaf((6, 40), torch.float32, g)
    w, b = leaf((40,), torch.float32, g, shift=1.0), leaf((40,), torch.float32, g)
    return lambda: kernels.layer_norm(x, w, b, 1e-5, residual=r), [x, r, w, b]


def _fused():
    g = torch.Generator().manual_seed(0)
    x, r, bias = leaf((6, 40), torch.float32, g), leaf((6, 40), torch.float32, g), leaf((40,), torch.float32, g)
    w, b = leaf((40,), torch.float32, g, shift=1.0), leaf((40,), torch.float32, g)
    return lambda: kernels.bias_dropout_add_layer_norm(x, bias, r, w, b, 1e-5, 0.1), [x, r, bias, w, b]


# case -> (inputs, forward's operators / launches / torch ops, backward's operators / launches / torch ops).
# The forward's one op is the dropout seed, drawn on the device.  layer_norm+residual's backward
# returns one gradient tensor for both x and residual (d(x + r) / dx = d(x + r) / dr): as both are
# leaves here, autograd's AccumulateGrad copies it for the second (in the model the residual's
# gradient is summed with the sublayer's, an add the unfused path makes too).
CASES = {
    "varlen_attention+dropout": (_varlen, (["varlen_attn_fwd"], 1, {"randint": 1}), (["varlen_attn_bwd"], 3, {})),
    "attention+padding+dropout": (_padded, (["attn_fwd"], 2, {"randint": 1}), (["attn_bwd"], 3, {})),
    "layer_norm+residual": (_layer_norm, (["ln_fwd"], 1, {}),
                            (["ln_bwd"], 2, {"new_empty_strided": 1, "copy_": 1})),
    "bias_dropout_add_layer_norm": (_fused, (["ln_fwd"], 1, {"randint": 1}), (["ln_bwd"], 2, {})),
}


@pytest.mark.parametrize("case", list(CASES))
def test_torch_ops_per_kernel_call_besides_launches(case):
    make, *phases = CASES[case]
    forward, _ = make()
    cost = _cost(forward)
    for phase, (operators, launches, ops) in zip(("forward", "backward"), phases):
        row = cost[phase]
        assert row["operators"] == operators, (phase, row)
        assert row["launches"] == launches, (phase, row)
        assert dict(row["ops"]) == ops, (phase, dict(row["ops"]))
        assert sum(row["ops"].values()) <= OP_BUDGET and not set(row["ops"]) & SYNC_OPS
