"""Triton LayerNorm (+ fused residual) against the PyTorch reference: forward and every gradient."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

# first: sets up Triton's interpreter before any kernel import; triton_interpreter is an autouse fixture
from kernel_helpers import (  # noqa: F401
    DEVICE, DTYPE_IDS, DTYPES, as_double, assert_matches, leaf, triton_interpreter)

import uer_ds.kernels as kernels
from uer_ds.kernels import fused_layer_norm, reference
from uer_ds.models.layers import LayerNorm

# odd shapes: Liger's (5, 123, 123), a non-power-of-two width with a ragged last row block, the
# widest supported row, and a single element
SHAPES = [(5, 123, 123), (3, 7, 1000), (2, 8192), (1, 1)]


def _inputs(shape, dtype, residual: bool, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = shape[-1]
    x = leaf(shape, dtype, g, scale=2.0, shift=0.5)  # a non-zero mean, as in real activations
    r = leaf(shape, dtype, g) if residual else None
    w = leaf((n,), dtype, g, scale=0.2, shift=1.0)
    b = leaf((n,), dtype, g, scale=0.2)
    dy = torch.randn(shape, generator=g).to(device=DEVICE, dtype=dtype)
    return x, r, w, b, dy


def _check_against_reference(shape, dtype, residual: bool, eps=1e-5, fn=kernels.layer_norm):
    x, r, w, b, dy = _inputs(shape, dtype, residual)
    y = fn(x, w, b, eps, residual=r)
    y.backward(dy)
    xd, wd, bd = as_double(x, w, b)
    rd = as_double(r)[0] if residual else None
    yd = reference.layer_norm(xd, wd, bd, eps, residual=rd)
    yd.backward(dy.double().cpu())
    assert y.dtype == dtype and y.shape == x.shape
    errors = {"y": assert_matches(y, yd, "y"), "dx": assert_matches(x.grad, xd.grad, "dx"),
              "dweight": assert_matches(w.grad, wd.grad, "dweight"), "dbias": assert_matches(b.grad, bd.grad, "dbias")}
    if residual:
        errors["dresidual"] = assert_matches(r.grad, rd.grad, "dresidual")
    return errors


@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_forward_and_gradients_match_reference(dtype, shape, residual):
    _check_against_reference(shape, dtype, residual)


def test_one_row_per_program_as_on_gpu(monkeypatch):
    """The GPU launch shape (BLOCK_M = 1) through the same kernels, under the interpreter too."""
    monkeypatch.setattr(fused_layer_norm, "INTERPRET_ROWS", 1)
    _check_against_reference((37, 123), torch.float32, residual=True)


@pytest.mark.parametrize("programs", [1, 5, 9])
def test_partial_weight_gradients_reduce_over_any_split(monkeypatch, programs):
    """dweight/dbias come from per-program fp32 partials: uneven splits and idle programs included."""
    monkeypatch.setattr(fused_layer_norm, "_backward_programs", lambda m, device: programs)
    _check_against_reference((9, 64), torch.float32, residual=False)


def test_mixed_precision_weights_and_strided_input():
    """bf16 activations with fp32 parameters (autocast-style), and a non-contiguous x."""
    g = torch.Generator().manual_seed(3)
    x = leaf((6, 4, 48), torch.bfloat16, g)
    xt = x.transpose(0, 1)  # (4, 6, 48), not contiguous
    w, b = leaf((48,), torch.float32, g, shift=1.0), leaf((48,), torch.float32, g)
    y = kernels.layer_norm(xt, w, b, 1e-6)
    y.float().sum().backward()
    xd, wd, bd = as_double(x, w, b)
    yd = reference.layer_norm(xd.transpose(0, 1), wd, bd, 1e-6)
    yd.sum().backward()
    assert y.dtype == torch.bfloat16 and w.grad.dtype == torch.float32
    assert_matches(y, yd, "y")
    assert_matches(x.grad, xd.grad, "dx")
    assert_matches(w.grad, wd.grad, "dweight", dtype=torch.bfloat16)


def test_residual_of_another_dtype_is_promoted_like_the_reference():
    """Under autocast a bf16 sublayer output meets an fp32 residual: x + residual promotes, then LN."""
    g = torch.Generator().manual_seed(5)
    x, r = leaf((4, 64), torch.bfloat16, g), leaf((4, 64), torch.float32, g)
    w, b = leaf((64,), torch.float32, g, shift=1.0), leaf((64,), torch.float32, g)
    y = kernels.layer_norm(x, w, b, 1e-6, residual=r)
    y.sum().backward()
    xd, rd, wd, bd = as_double(x, r, w, b)
    reference.layer_norm(xd, wd, bd, 1e-6, residual=rd).sum().backward()
    assert y.dtype == torch.float32 and x.grad.dtype == torch.bfloat16 and r.grad.dtype == torch.float32
    assert_matches(y, reference.layer_norm(*as_double(x, w, b), 1e-6, residual=rd.detach()), "y")
    assert_matches(x.grad, xd.grad, "dx")
    assert_matches(r.grad, rd.grad, "dresidual")


def test_weight_and_bias_may_be_none():
    g = torch.Generator().manual_seed(4)
    x = leaf((3, 40), torch.float32, g)
    y = kernels.layer_norm(x, None, None, 1e-5)
    assert_matches(y, reference.layer_norm(x.detach().double().cpu(), None, None, 1e-5), "y")


def test_module_state_dict_is_the_reference_modules():
    ours, theirs = kernels.FusedLayerNorm(32, eps=1e-12), LayerNorm(32, eps=1e-12, kernels="torch")
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight", "bias"]
    with torch.no_grad():
        theirs.weight.uniform_(0.5, 1.5)
        theirs.bias.uniform_(-0.1, 0.1)
    ours.load_state_dict(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    ours, theirs = ours.to(DEVICE), theirs.to(DEVICE)
    x, r = torch.randn(2, 5, 32, device=DEVICE), torch.randn(2, 5, 32, device=DEVICE)
    torch.testing.assert_close(ours(x, residual=r), reference.layer_norm(x, theirs.weight, theirs.bias, 1e-12, r),
                               atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("make, match", [
    (lambda: (torch.randn(2, 8193), torch.ones(8193), torch.zeros(8193), None),
     r"hidden size .* is 8193: it must be in 1\.\.8192"),
    (lambda: (torch.randn(2, 8), torch.ones(7), torch.zeros(8), None), r"weight has shape \(7,\): it must be \(8,\)"),
    (lambda: (torch.randn(2, 8), torch.ones(8), torch.zeros(8), torch.randn(2, 4)), r"residual has shape \(2, 4\)"),
    (lambda: (torch.ones(2, 8, dtype=torch.int64), torch.ones(8), torch.zeros(8), None), r"x has dtype torch.int64"),
])
def test_bad_input_names_the_value_and_the_rule(make, match):
    x, w, b, r = (t.to(DEVICE) if t is not None else None for t in make())
    with pytest.raises(ValueError, match=match):
        kernels.layer_norm(x, w, b, residual=r)


@pytest.mark.skipif(DEVICE != "cpu", reason="checks the message for CPU tensors without the interpreter")
def test_cpu_without_interpreter_says_what_to_do():
    code = ("import os, torch, uer_ds.kernels as k\n"
            "os.environ.pop('TRITON_INTERPRET', None)\n"
            "for call in (lambda: k.layer_norm(torch.randn(2, 4), torch.ones(4), torch.zeros(4)),\n"
            "             lambda: k.attention(*[torch.randn(1, 1, 4, 16)] * 3)):\n"
            "    try:\n        call()\n    except RuntimeError as err:\n        print(err)\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("layer_norm: the Triton kernels need CUDA tensors (got device cpu)")
    assert lines[1].startswith("attention: the Triton kernels need CUDA tensors (got device cpu)")
    assert all("TRITON_INTERPRET=1" in line for line in lines)


# ---- the fused post-LN sublayer close: LN(dropout(x + bias) + residual) ---------------------------
def _fused_check(shape, dtype, dropout_p, seed=11, bias=True, residual=True, eps=1e-5):
    g = torch.Generator().manual_seed(seed)
    n = shape[-1]
    x = leaf(shape, dtype, g, scale=2.0, shift=0.5)
    r = leaf(shape, dtype, g) if residual else None
    lin_b = leaf((n,), dtype, g, scale=0.5) if bias else None
    w, b = leaf((n,), dtype, g, scale=0.2, shift=1.0), leaf((n,), dtype, g, scale=0.2)
    dy = torch.randn(shape, generator=g).to(device=DEVICE, dtype=dtype)
    y = kernels.bias_dropout_add_layer_norm_with_seed(x, lin_b, r, w, b, eps, dropout_p, seed=seed)
    y.backward(dy)
    m = x.numel() // n
    keep = (kernels.layer_norm_keep_mask(seed, (m, n), dropout_p, DEVICE).cpu().view(shape) if dropout_p
            else torch.ones(shape, dtype=torch.bool))
    names, tensors = ["x", "r", "bias", "w", "b"], (x, r, lin_b, w, b)
    doubles = {name: as_double(t)[0] if t is not None else None for name, t in zip(names, tensors)}
    yd = reference.bias_dropout_add_layer_norm_with_keep_mask(doubles["x"], doubles["bias"], doubles["r"],
                                                              doubles["w"], doubles["b"], eps, dropout_p, keep)
    yd.backward(dy.double().cpu())
    assert y.dtype == dtype and y.shape == x.shape
    errors = {"y": assert_matches(y, yd, "y")}
    for name, t in zip(names, tensors):
        if t is not None:
            errors[f"d{name}"] = assert_matches(t.grad, doubles[name].grad, f"d{name}")
    return errors


@pytest.mark.parametrize("dropout_p", [0.0, 0.3], ids=["no-dropout", "dropout"])
@pytest.mark.parametrize("shape", [(5, 123, 123), (3, 7, 1000), (2, 8192)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_bias_dropout_add_layer_norm_matches_reference(dtype, shape, dropout_p):
    """Output and the gradients of x, residual, the sublayer bias, weight and LN bias; the kernel's own
    dropout mask given to the reference (so the backward must regenerate the forward's mask)."""
    _fused_check(shape, dtype, dropout_p)


@pytest.mark.parametrize("bias, residual", [(False, True), (True, False), (False, False)])
def test_bias_and_residual_are_optional(bias, residual):
    _fused_check((6, 40), torch.float32, 0.2, bias=bias, residual=residual)


def test_several_rows_per_program_as_on_gpu_for_narrow_rows(monkeypatch):
    """The GPU takes GPU_TILE_ELEMENTS // BLOCK_N rows per program for hidden <= 2048 (4 at 768); the
    interpreter runs the same multi-row code with 4 rows, ragged last block and uneven program split."""
    assert fused_layer_norm._launch(768, torch.device("cuda"))[:2] == (4, 1024)
    assert fused_layer_norm._launch(2048, torch.device("cuda"))[:2] == (2, 2048)
    assert fused_layer_norm._launch(4096, torch.device("cuda"))[:2] == (1, 4096)
    monkeypatch.setattr(fused_layer_norm, "INTERPRET_ROWS", 4)
    monkeypatch.setattr(fused_layer_norm, "_backward_programs", lambda m, device: 3)
    _fused_check((37, 96), torch.float32, 0.25)


def test_dropout_mask_statistics_and_reproducibility():
    p, shape = 0.3, (64, 300)
    keep = kernels.layer_norm_keep_mask(99, shape, p, DEVICE).cpu().float()
    n = keep.numel()
    assert abs(keep.mean().item() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    assert abs((keep[1:] == keep[:-1]).float().mean().item() - 0.58) < 0.02  # rows independent
    g = torch.Generator().manual_seed(0)
    x, w = leaf((8, 64), torch.float32, g), leaf((64,), torch.float32, g, shift=1.0)
    torch.manual_seed(3)
    a = kernels.bias_dropout_add_layer_norm(x, None, None, w, None, 1e-5, 0.5)
    torch.manual_seed(3)
    b = kernels.bias_dropout_add_layer_norm(x, None, None, w, None, 1e-5, 0.5)
    c = kernels.bias_dropout_add_layer_norm(x, None, None, w, None, 1e-5, 0.5)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_fused_op_errors_name_the_value_and_the_rule():
    x = torch.randn(2, 8, device=DEVICE)
    with pytest.raises(ValueError, match=r"the sublayer bias has shape \(7,\): it must be \(8,\)"):
        kernels.bias_dropout_add_layer_norm(x, torch.zeros(7, device=DEVICE), None, None, None)
    with pytest.raises(ValueError, match=r"dropout_p is -0.1: it must be in \[0, 1\)"):
        kernels.bias_dropout_add_layer_norm(x, None, None, None, None, 1e-5, -0.1)
