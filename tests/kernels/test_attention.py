"""Triton flash attention against the PyTorch reference: forward and dq, dk, dv; masks, dropout, shapes."""
from __future__ import annotations

import math

import pytest
import torch

# first: sets up Triton's interpreter before any kernel import; triton_interpreter is an autouse fixture
from kernel_helpers import (  # noqa: F401
    DEVICE, DTYPE_IDS, DTYPES, as_double, assert_matches, leaf, triton_interpreter)

import uer_ds.kernels as kernels
from uer_ds.kernels import FlashAttention, attention_common, reference
from uer_ds.kernels import attention_keep_mask as dropout_keep_mask


def _padding(b: int, tk: int, lengths) -> torch.Tensor:
    """(B, Tk) True at padding: row i keeps its first lengths[i] keys (0 = an all-padding row)."""
    return torch.arange(tk)[None, :] >= torch.tensor(lengths)[:, None]


def _inputs(b, h, tq, tk, d, dtype, seed=0, layout_bthd=False):
    g = torch.Generator().manual_seed(seed)
    if layout_bthd:  # the model's layout: (B, T, H, D) viewed as (B, H, T, D)
        q, k, v = (leaf((b, t, h, d), dtype, g).detach().transpose(1, 2).requires_grad_() for t in (tq, tk, tk))
    else:
        q, k, v = (leaf((b, h, t, d), dtype, g) for t in (tq, tk, tk))
    do = torch.randn(b, h, tq, d, generator=g).to(device=DEVICE, dtype=dtype)
    return q, k, v, do


def _check(b, h, tq, tk, d, dtype, causal=False, lengths=None, scale=None, layout_bthd=False, dropout_p=0.0,
           seed=None):
    q, k, v, do = _inputs(b, h, tq, tk, d, dtype, layout_bthd=layout_bthd)
    kpm = _padding(b, tk, lengths).to(DEVICE) if lengths is not None else None
    if dropout_p:
        o = kernels.attention_with_seed(q, k, v, kpm, causal, dropout_p, scale, seed=seed)
    else:
        o = kernels.attention(q, k, v, key_padding_mask=kpm, causal=causal, softmax_scale=scale)
    o.backward(do)
    qd, kd, vd = as_double(q, k, v)
    kpm_cpu = kpm.cpu() if kpm is not None else None
    if dropout_p:
        keep = dropout_keep_mask(seed, (b, h, tq, tk), dropout_p, DEVICE).cpu()
        od = reference.attention_with_dropout_mask(qd, kd, vd, keep, kpm_cpu, causal, dropout_p, scale)
    else:
        od = reference.attention(qd, kd, vd, key_padding_mask=kpm_cpu, causal=causal, softmax_scale=scale)
    od.backward(do.double().cpu())
    assert o.shape == q.shape and o.dtype == dtype
    return {"o": assert_matches(o, od, "output"), "dq": assert_matches(q.grad, qd.grad, "dq"),
            "dk": assert_matches(k.grad, kd.grad, "dk"), "dv": assert_matches(v.grad, vd.grad, "dv")}


# (B, H, Tq, Tk, D, key lengths or None): sequence lengths 1, 17, 130 (not multiples of any block);
# an all-padding row (length 0); Tq != Tk (a KV cache's queries against a longer key sequence)
CASES = {
    "T130-d32": (2, 1, 130, 130, 32, None),
    "T130-d32-padded": (2, 1, 130, 130, 32, [130, 77]),
    "T17-d64-padded-allpad": (3, 2, 17, 17, 64, [17, 5, 0]),
    "T1-d16": (2, 1, 1, 1, 16, None),
    "T1-d16-allpad": (2, 1, 1, 1, 16, [1, 0]),
    "Tq5-Tk40-d16-padded": (2, 2, 5, 40, 16, [40, 33]),
    "Tq40-Tk7-d32": (1, 2, 40, 7, 32, None),
}


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_forward_and_gradients_match_reference(dtype, case, causal):
    b, h, tq, tk, d, lengths = CASES[case]
    _check(b, h, tq, tk, d, dtype, causal=causal, lengths=lengths)


@pytest.mark.parametrize("d", [32, 64, 128])
def test_head_dims_in_the_models_layout(d):
    """The issue's head dims, with q, k, v as the (B, T, H, D) views MultiHeadedAttention hands over."""
    _check(2, 2, 33, 33, d, torch.float32, causal=d == 64, lengths=[33, 20], layout_bthd=True)


def test_softmax_scale_is_honoured():
    _check(1, 2, 20, 20, 16, torch.float32, lengths=[14], scale=0.37)


def test_dead_rows_are_zero_and_have_zero_gradient():
    """All-padding rows and causal rows with no visible key (Tq > Tk): zeros, not NaN, and no gradient."""
    q, k, v, _ = _inputs(2, 1, 9, 4, 16, torch.float32)
    kpm = _padding(2, 4, [4, 0]).to(DEVICE)
    o = kernels.attention(q, k, v, key_padding_mask=kpm, causal=True)
    o.sum().backward()
    assert torch.isfinite(o).all() and torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()
    assert (o[1] == 0).all() and (q.grad[1] == 0).all() and (k.grad[1] == 0).all() and (v.grad[1] == 0).all()
    # causal aligns the last query with the last key: queries 0..4 of 9 see none of the 4 keys
    assert (o[0, :, :5] == 0).all() and (q.grad[0, :, :5] == 0).all() and (o[0, :, 5:] != 0).any()


@pytest.mark.parametrize("blocks", [(16, 32), (16, 16)], ids=["M16-N32", "M16-N16"])
def test_other_tile_shapes(monkeypatch, blocks):
    """The causal split and the padding skip with BLOCK_N > BLOCK_M and with square tiles."""
    monkeypatch.setattr(attention_common, "INTERPRET_BLOCKS", blocks)
    _check(2, 1, 50, 70, 16, torch.float32, causal=True, lengths=[70, 41])
    _check(2, 1, 70, 50, 16, torch.float32, causal=True, lengths=[12, 50])


# ---- dropout -------------------------------------------------------------------------------------
def test_dropout_mask_statistics():
    p = 0.3
    keep = dropout_keep_mask(1234, (2, 3, 64, 80), p, DEVICE).cpu()
    n = keep.numel()
    assert abs(keep.float().mean().item() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)  # 5 sigma
    # every (batch, head) has its own stream, and another seed gives another mask
    flat = keep.view(6, -1).float()
    agreement = (flat[:, None, :] == flat[None, :, :]).float().mean(-1)
    off_diagonal = agreement[~torch.eye(6, dtype=torch.bool)]
    assert (off_diagonal < 0.65).all()  # independent masks agree on p^2 + (1-p)^2 = 0.58 of entries
    other = dropout_keep_mask(1235, (2, 3, 64, 80), p, DEVICE).cpu()
    assert (keep != other).float().mean() > 0.3
    # within a row, columns are not correlated with their neighbours
    assert abs((keep[..., 1:] == keep[..., :-1]).float().mean().item() - 0.58) < 0.02


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_dropout_forward_and_backward_use_the_same_mask(causal):
    """The reference given the kernels' own mask reproduces output and every gradient: the backward
    regenerates exactly the forward's mask."""
    _check(2, 2, 33, 33, 16, torch.float32, causal=causal, lengths=[33, 19], dropout_p=0.25, seed=77)


def test_dropout_reproducible_from_torch_seed():
    q, k, v, do = _inputs(1, 2, 24, 24, 16, torch.float32)

    def run(seed):
        torch.manual_seed(seed)
        o = kernels.attention(q, k, v, dropout_p=0.4)
        dq, = torch.autograd.grad(o, q, do)
        return o, dq

    (o1, g1), (o2, g2), (o3, g3) = run(5), run(5), run(6)
    assert torch.equal(o1, o2) and torch.equal(g1, g2)
    assert not torch.equal(o1, o3) and not torch.equal(g1, g3)
    torch.manual_seed(5)
    assert not torch.equal(kernels.attention(q, k, v, dropout_p=0.4), kernels.attention(q, k, v, dropout_p=0.4))


def test_dropout_survives_activation_checkpointing():
    """torch.utils.checkpoint replays the forward with the saved RNG state: the same seed, the same mask."""
    from torch.utils.checkpoint import checkpoint

    q, k, v, do = _inputs(1, 2, 20, 20, 16, torch.float32)
    torch.manual_seed(8)
    plain = torch.autograd.grad(kernels.attention(q, k, v, dropout_p=0.3), (q, k, v), do)
    torch.manual_seed(8)
    out = checkpoint(lambda a, b, c: kernels.attention(a, b, c, dropout_p=0.3), q, k, v, use_reentrant=False)
    replayed = torch.autograd.grad(out, (q, k, v), do)
    assert all(torch.equal(a, b) for a, b in zip(plain, replayed))


def test_module_drops_only_in_training():
    q, k, v, _ = _inputs(1, 1, 16, 16, 16, torch.float32)
    attn = FlashAttention(dropout_p=0.5).eval()
    assert_matches(attn(q, k, v), reference.attention(*as_double(q, k, v)), "eval output")
    assert not torch.allclose(attn.train()(q, k, v), attn.eval()(q, k, v))


# ---- contract errors -----------------------------------------------------------------------------
@pytest.mark.parametrize("shapes, kw, match", [
    (((1, 1, 8, 48),) * 3, {}, r"head dim 48 is not supported: it must be one of 16, 32, 64, 128"),
    (((1, 1, 8, 16), (1, 2, 8, 16), (1, 2, 8, 16)), {}, r"k and v must be \(B, H, Tk, D\)"),
    (((1, 1, 8, 16),) * 3, {"key_padding_mask": torch.zeros(1, 7, dtype=torch.bool)},
     r"key_padding_mask has shape \(1, 7\): it must be \(B, Tk\) = \(1, 8\)"),
    (((1, 1, 8, 16),) * 3, {"dropout_p": 1.0}, r"dropout_p is 1.0: it must be in \[0, 1\)"),
    (((8, 16),) * 3, {}, r"q has shape \(8, 16\): it must be 4-d"),
])
def test_bad_input_names_the_value_and_the_rule(shapes, kw, match):
    q, k, v = (torch.randn(s, device=DEVICE) for s in shapes)
    kw = {key: (val.to(DEVICE) if torch.is_tensor(val) else val) for key, val in kw.items()}
    with pytest.raises(ValueError, match=match):
        kernels.attention(q, k, v, **kw)


def test_mixed_dtypes_are_refused():
    q = torch.randn(1, 1, 8, 16, device=DEVICE)
    with pytest.raises(ValueError, match="q, k, v have dtypes torch.float32, torch.float16, torch.float32"):
        kernels.attention(q, q.half(), q)
