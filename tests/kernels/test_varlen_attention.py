"""Triton varlen attention against the reference run sequence by sequence: forward, dq, dk, dv; causal,
dropout, head dims, and the contract's errors."""
from __future__ import annotations

import math

import pytest
import torch

# first: sets up Triton's interpreter before any kernel import; triton_interpreter is an autouse fixture
from kernel_helpers import (  # noqa: F401
    DEVICE, DTYPE_IDS, DTYPES, assert_matches, leaf, triton_interpreter)

import uer_ds.kernels as kernels
from uer_ds.kernels import reference
from uer_ds.kernels import VarlenFlashAttention
from uer_ds.kernels import varlen_attention_keep_mask as dropout_keep_mask
from uer_ds.kernels import varlen_attention_with_seed as varlen_flash_attention

# sequence lengths: 1, 17 and 130 together (none a multiple of a block; 130 crosses several); all
# equal; a single sequence; and a batch holding an empty row (a sequence of 0 tokens)
LENGTHS = {"1-17-130": [1, 17, 130], "equal-24x3": [24, 24, 24], "one-33": [33], "with-empty-9-0-5": [9, 0, 5]}


def _cu(lengths) -> torch.Tensor:
    return torch.tensor([0] + list(torch.tensor(lengths).cumsum(0)), dtype=torch.int32)


def _inputs(lengths, h, d, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = sum(lengths)
    q, k, v = (leaf((n, h, d), dtype, g) for _ in range(3))
    do = torch.randn(n, h, d, generator=g).to(device=DEVICE, dtype=dtype)
    return q, k, v, do


def _per_sequence(q, k, v, lengths, causal, scale=None, keep=None, dropout_p=0.0):
    """The reference, one sequence at a time, in float64 on the CPU: (B=1, H, L, D) each, outputs concatenated."""
    outs, start = [], 0
    for b, n in enumerate(lengths):
        if n == 0:
            continue
        qs, ks, vs = (t[start:start + n].transpose(0, 1)[None] for t in (q, k, v))  # (1, H, L, D)
        if keep is None:
            o = reference.attention(qs, ks, vs, causal=causal, softmax_scale=scale)
        else:
            o = reference.attention_with_dropout_mask(qs, ks, vs, keep[b:b + 1, :, :n, :n], causal=causal,
                                                      dropout_p=dropout_p, softmax_scale=scale)
        outs.append(o[0].transpose(0, 1))
        start += n
    return torch.cat(outs)


def _check(lengths, h, d, dtype, causal, scale=None, dropout_p=0.0, seed=None):
    q, k, v, do = _inputs(lengths, h, d, dtype)
    cu = _cu(lengths).to(DEVICE)
    o = varlen_flash_attention(q, k, v, cu, max(lengths), causal, dropout_p, scale, seed=seed)
    o.backward(do)
    keep = dropout_keep_mask(seed, cu, h, max(lengths), dropout_p).cpu() if dropout_p else None
    qd, kd, vd = (t.detach().double().cpu().requires_grad_() for t in (q, k, v))
    od = _per_sequence(qd, kd, vd, lengths, causal, scale, keep, dropout_p)
    od.backward(do.double().cpu())
    assert o.shape == q.shape and o.dtype == dtype
    return {"o": assert_matches(o, od, "output"), "dq": assert_matches(q.grad, qd.grad, "dq"),
            "dk": assert_matches(k.grad, kd.grad, "dk"), "dv": assert_matches(v.grad, vd.grad, "dv")}


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("case", list(LENGTHS))
def test_fp32_forward_and_gradients_match_the_reference_sequence_by_sequence(case, causal):
    _check(LENGTHS[case], 2, 16, torch.float32, causal)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("dtype", DTYPES[1:], ids=DTYPE_IDS[1:])
def test_half_precision_matches_at_the_table_tolerance(dtype, causal):
    _check([1, 17, 70], 2, 32, dtype, causal)


@pytest.mark.parametrize("d", [32, 64, 128])
def test_head_dims(d):
    _check([5, 40, 23], 2, d, torch.float32, causal=d == 64)


def test_softmax_scale_is_honoured():
    _check([20, 9], 1, 16, torch.float32, causal=False, scale=0.37)


def test_model_layout_strided_views():
    """q, k, v as MultiHeadedAttention.forward_packed hands them over: (N, hidden) rows viewed (N, H, D)."""
    g = torch.Generator().manual_seed(4)
    lengths, h, d = [7, 19], 2, 16
    n = sum(lengths)
    qkv = leaf((n, 3 * h * d), torch.float32, g)
    q, k, v = (t.view(n, h, d) for t in qkv.split(h * d, dim=1))  # strides (3 H D, D, 1)
    o = kernels.varlen_attention(q, k, v, _cu(lengths).to(DEVICE), max(lengths), causal=True)
    o.sum().backward()
    qd = qkv.detach().double().cpu().requires_grad_()
    od = _per_sequence(*(t.view(n, h, d) for t in qd.split(h * d, dim=1)), lengths, causal=True)
    od.sum().backward()
    assert_matches(o, od, "output")
    assert_matches(qkv.grad, qd.grad, "d(qkv)")


def test_reference_equals_the_per_sequence_definition():
    """kernels/reference.varlen_attention (the CPU path and the benchmarks' baseline) pads, masks and
    gathers: it must equal attention run on each sequence alone, gradients included."""
    lengths = [3, 0, 11, 6]
    q, k, v, do = (t.detach().double().cpu() for t in _inputs(lengths, 3, 16, torch.float32, seed=9))
    for causal in (False, True):
        a = [t.clone().requires_grad_() for t in (q, k, v)]
        b = [t.clone().requires_grad_() for t in (q, k, v)]
        out_a = reference.varlen_attention(*a, _cu(lengths), max(lengths), causal=causal)
        out_b = _per_sequence(*b, lengths, causal)
        out_a.backward(do)
        out_b.backward(do)
        torch.testing.assert_close(out_a, out_b, atol=1e-12, rtol=1e-12)
        for x, y in zip(a, b):
            torch.testing.assert_close(x.grad, y.grad, atol=1e-12, rtol=1e-12)


# ---- dropout -------------------------------------------------------------------------------------
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_dropout_backward_regenerates_the_forward_mask(causal):
    """The reference given the kernels' own mask reproduces output and every gradient."""
    _check([9, 33, 20], 2, 16, torch.float32, causal, dropout_p=0.25, seed=77)


def test_dropout_mask_statistics_and_streams():
    p, lengths, h = 0.3, [64, 80, 17], 3
    cu = _cu(lengths).to(DEVICE)
    keep = dropout_keep_mask(1234, cu, h, 80, p).cpu()
    kept = torch.cat([keep[b, :, :n, :n].reshape(-1) for b, n in enumerate(lengths)]).float()
    n = kept.numel()
    assert abs(kept.mean().item() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)  # 5 sigma
    assert not keep[1, :, 80:].any() and not keep[2, :, 17:].any() and not keep[2, :, :, 17:].any()
    # each (sequence, head) has its own stream: independent masks agree on p^2 + (1-p)^2 = 0.58
    a, b = keep[0, 0, :64, :64].float(), keep[0, 1, :64, :64].float()
    assert abs((a == b).float().mean().item() - 0.58) < 0.05
    other = dropout_keep_mask(1235, cu, h, 80, p).cpu()
    other_kept = torch.cat([other[b, :, :n, :n].reshape(-1) for b, n in enumerate(lengths)]).float()
    assert abs((kept != other_kept).float().mean().item() - 0.42) < 0.02  # another seed: 2 p (1 - p) differ


def test_dropout_seed_comes_from_torch_generator():
    q, k, v, do = _inputs([12, 20], 2, 16, torch.float32)
    cu = _cu([12, 20]).to(DEVICE)

    def run(seed):
        torch.manual_seed(seed)
        return torch.autograd.grad(kernels.varlen_attention(q, k, v, cu, 20, dropout_p=0.4), (q, k, v), do)

    first, again, other = run(5), run(5), run(6)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])


def test_module_drops_only_in_training():
    q, k, v, _ = _inputs([16], 1, 16, torch.float32)
    cu = _cu([16]).to(DEVICE)
    attn = VarlenFlashAttention(dropout_p=0.5).eval()
    assert torch.equal(attn(q, k, v, cu, 16), attn(q, k, v, cu, 16))
    assert not torch.allclose(attn.train()(q, k, v, cu, 16), attn.eval()(q, k, v, cu, 16))


# ---- contract errors -----------------------------------------------------------------------------
def _qkv(shape=(8, 1, 16)):
    return [torch.randn(shape, device=DEVICE) for _ in range(3)]


@pytest.mark.parametrize("args, match", [
    (lambda: (*_qkv((8, 1, 48)), _cu([8]), 8), r"head dim 48 is not supported: it must be one of 16, 32, 64, 128"),
    (lambda: (*_qkv((1, 8, 1, 16)), _cu([8]), 8), r"q has shape \(1, 8, 1, 16\): it must be 3-d \(N, H, D\)"),
    (lambda: (*_qkv(), _cu([8]).long(), 8), r"cu_seqlens has dtype torch.int64 .* must be int32 \(B \+ 1,\)"),
    (lambda: (*_qkv(), _cu([8]), 0), r"max_seqlen is 0: it must be a Python int, the longest sequence"),
    (lambda: (*_qkv(), _cu([8]), torch.tensor(8)), r"max_seqlen is tensor\(8\): it must be a Python int"),
])
def test_bad_input_names_the_value_and_the_rule(args, match):
    q, k, v, cu, max_seqlen = args()
    with pytest.raises(ValueError, match=match):
        kernels.varlen_attention(q, k, v, cu.to(DEVICE), max_seqlen)


def test_bad_dropout_and_mixed_shapes_are_refused():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"dropout_p is 1.0: it must be in \[0, 1\)"):
        kernels.varlen_attention(q, k, v, _cu([8]).to(DEVICE), 8, dropout_p=1.0)
    with pytest.raises(ValueError, match=r"q \(8, 1, 16\), k \(7, 1, 16\), v \(8, 1, 16\): they must be equal"):
        kernels.varlen_attention(q, k[:7], v, _cu([8]).to(DEVICE), 8)
