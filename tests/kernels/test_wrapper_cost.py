"""The host cost of a kernel call, pinned: the torch ops each public kernel issues besides its Triton
launches, forward and backward (issue 16's goal: at most 2), and no device->host read.

On a GPU every torch op is a kernel launch and some microseconds of Python; the kernels' first
wrappers issued 8 extra ops per attention call (the padding's key ranges, in every layer) and a
`.item()` per dropout seed.  Counted on the CPU, for the eager call (torch.compile takes the
registered `uer_ds::*` operators instead, and its graph runs no Python per call): a dispatch mode
records the torch ops while the launches are recorded instead of run.
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
    """Records non-view aten ops by name."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ not in VIEW_OPS:
            self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def _name(kernel) -> str:
    """A jit function's name (an autotuned kernel's through its .fn)."""
    return getattr(kernel, "__name__", None) or getattr(getattr(kernel, "fn", None), "__name__", repr(kernel))


def _cost(forward) -> dict:
    """Per phase of an eager call: the torch ops dispatched and the Triton launches (recorded, not run)."""
    launches: list = []
    with pytest.MonkeyPatch.context() as patch:
        for module in MODULES:
            patch.setattr(module, "launch", lambda kernel, grid, *a, **kw: launches.append(_name(kernel)))
        with Recorder() as fwd:
            out = forward()
        n_fwd = len(launches)
        grad = torch.randn_like(out)
        with Recorder() as bwd:
            out.backward(grad)
    return {"forward": {"ops": fwd.ops, "launches": launches[:n_fwd]},
            "backward": {"ops": bwd.ops, "launches": launches[n_fwd:]}}


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


# case -> (inputs, forward's launches and torch ops, backward's launches and torch ops).  The forward's one
# op is the dropout seed, drawn on the device.  layer_norm+residual's backward returns one gradient
# tensor for both x and residual (d(x + r) / dx = d(x + r) / dr): as both are leaves here, autograd's
# AccumulateGrad copies it for the second (in the model the residual's gradient is summed with the
# sublayer's, an add the unfused path makes too).
CASES = {
    "varlen_attention+dropout": (_varlen, (["_varlen_fwd_kernel"], {"randint": 1}),
                                 (["_varlen_bwd_preprocess_kernel", "_varlen_bwd_dkdv_kernel",
                                   "_varlen_bwd_dq_kernel"], {})),
    "attention+padding+dropout": (_padded, (["_key_range_kernel", "_attn_fwd_kernel"], {"randint": 1}),
                                  (["_attn_bwd_preprocess_kernel", "_attn_bwd_dkdv_kernel", "_attn_bwd_dq_kernel"],
                                   {})),
    "layer_norm+residual": (_layer_norm, (["_ln_fwd_kernel"], {}), (["_ln_bwd_kernel", "_ln_reduce_kernel"],
                                                                     {"new_empty_strided": 1, "copy_": 1})),
    "bias_dropout_add_layer_norm": (_fused, (["_ln_fwd_kernel"], {"randint": 1}),
                                    (["_ln_bwd_kernel", "_ln_reduce_kernel"], {})),
}


@pytest.mark.parametrize("case", list(CASES))
def test_torch_ops_per_kernel_call_besides_launches(case):
    make, *phases = CASES[case]
    forward, _ = make()
    cost = _cost(forward)
    for phase, (launches, ops) in zip(("forward", "backward"), phases):
        row = cost[phase]
        assert row["launches"] == launches, (phase, row)
        assert dict(row["ops"]) == ops, (phase, dict(row["ops"]))
        assert sum(row["ops"].values()) <= OP_BUDGET and not set(row["ops"]) & SYNC_OPS
