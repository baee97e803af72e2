"""Fused LayerNorm in Triton: y = LN(dropout(x + bias) + residual), forward and backward.

Two public forms, both differentiable in every tensor argument:
- `layer_norm(x, weight, bias, eps, residual)`: LN(x + residual), the signature of
  `uer_ds.kernels.reference.layer_norm` (the LayerNorm slot; the residual add is fused, as the
  post-LN transformer layer passes it);
- `bias_dropout_add_layer_norm(x, bias, residual, weight, ln_bias, eps, dropout_p)`: the op chain
  that closes a post-LN sublayer (a linear layer's bias add, dropout, the residual add, LayerNorm),
  the fusion NVIDIA's BERT makes: one read of x and residual, one write of y.

Layers (as Liger-Kernel): jit kernels `_ln_fwd_kernel` / `_ln_bwd_kernel` / `_ln_reduce_kernel` ->
operators `uer_ds::ln_fwd` / `uer_ds::ln_bwd` (`kernel_op`: torch.library.triton_op on a GPU, so
torch.compile and CUDA graphs see the launches) with autograd registered on the forward ->
functionals (`bias_dropout_add_layer_norm_with_seed` for a given dropout seed) -> `FusedLayerNorm`
(nn.Module, the reference's parameter names: weight, bias); all through the package's door,
`uer_ds.kernels`.  Launch shapes follow the package's one tuning policy (fixed rules in plain
Python, no autotuner: kernels/src/attention_common.py says why): `_launch` below.

Numerics: inputs fp32/fp16/bf16 (x, bias and residual may differ: y takes their promoted dtype, as
the reference's additions do), statistics and every sum in fp32.  Dropout keeps element (i, j) when
Philox(seed, i * N + j) >= p (Triton's `tl.rand`), seed a (1,) int64 device tensor drawn per call
(`dropout_seed`): the backward regenerates the mask instead of storing it, and no host read is
needed.  Forward: BLOCK_M rows per program.  Backward: a grid of G programs, each walking a
contiguous run of rows BLOCK_M at a time, writes dx (and the residual's gradient when it differs)
and its own fp32 partial sums of dweight, dln_bias and dbias (G, N); one reduction kernel sums the
partials of all three in one pass and casts them, so no program waits on a lock or an atomic, the
result is deterministic, and the backward issues no torch op besides its two launches.  The
backward recomputes the LN input from x, bias and residual rather than storing it (no extra write in
the forward, which is all inference runs).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import triton
import triton.language as tl
from torch import nn

from uer_ds.kernels.utils import (as_seed, call_seed, cdiv, check_dtype, check_launchable, compiling,
                                  cuda_device_guard, eager_function, kernel_op, launch, multiprocessor_count,
                                  next_power_of_2)

MAX_HIDDEN = 8192  # one row lives in one register block; the bound (BERT ... LLaMA-7B widths)
# Rows per program under the interpreter, whose cost is per program and per op rather than per
# element: 16 rows a block ran (615, 123) fwd+bwd in 0.5 s against 3.1 s one row at a time.
INTERPRET_ROWS = 16
# GPU: rows per program so that a program holds about this many elements (hidden <= 2048 takes
# several rows: 4 at 768/1024, 2 at 2048; one row from 4096 on).  Not tuned on a GPU yet.
GPU_TILE_ELEMENTS = 4096


# ---- jit kernels ---------------------------------------------------------------------------------
@triton.jit
def _ln_keep(SEED,  # (1,) int64 Philox seed
             rows, cols, N, dropout_p):
    """(BLOCK_M, BLOCK_N) bool: which elements dropout keeps; one expression for every kernel."""
    return tl.rand(tl.load(SEED), rows[:, None] * N + cols[None, :]) >= dropout_p


@triton.jit
def _ln_keep_kernel(KEEP,  # (M, N) int8 out: 1 where dropout keeps the element
                    SEED,  # (1,) int64 Philox seed
                    M, N, dropout_p, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """KEEP (M, N) int8: the dropout mask of the LayerNorm kernels for this seed."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    keep = _ln_keep(SEED, rows, cols, N, dropout_p)
    tl.store(KEEP + rows.to(tl.int64)[:, None] * N + cols[None, :], keep.to(tl.int8),
             mask=(rows < M)[:, None] & (cols < N)[None, :])


@triton.jit
def _ln_input(X,  # (M, N) input rows, row stride stride_x, unit column stride
              BIAS,  # (N,) the sublayer's linear bias (HAS_BIAS; else unread)
              R,  # (M, N) residual rows, row stride stride_r (HAS_RESIDUAL; else unread)
              SEED,  # (1,) int64 Philox seed (DROPOUT; else unread)
              rows, cols, mask, stride_x, stride_r, N, dropout_p,
              HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, DROPOUT: tl.constexpr):
    """(BLOCK_M, BLOCK_N) fp32 LN input h = dropout(x + bias) + residual, and the dropout keep mask."""
    rows64 = rows.to(tl.int64)[:, None]
    h = tl.load(X + rows64 * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        h += tl.load(BIAS + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
    keep = mask
    if DROPOUT:
        keep = _ln_keep(SEED, rows, cols, N, dropout_p)
        h = tl.where(keep, h / (1.0 - dropout_p), 0.0)
    if HAS_RESIDUAL:
        h += tl.load(R + rows64 * stride_r + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    return h, keep


@triton.jit
def _ln_fwd_kernel(X,  # (M, N) input rows, row stride stride_x
                   BIAS,  # (N,) the sublayer's linear bias (HAS_BIAS)
                   R,  # (M, N) residual rows, row stride stride_r (HAS_RESIDUAL)
                   W,  # (N,) LayerNorm weight
                   B,  # (N,) LayerNorm bias
                   Y,  # (M, N) out, the promoted dtype, row stride stride_y
                   Mean,  # (M,) fp32 out: row mean of the LN input
                   Rstd,  # (M,) fp32 out: row 1 / sqrt(var + eps)
                   SEED,  # (1,) int64 Philox seed (DROPOUT)
                   stride_x, stride_r, stride_y, M, N, eps, dropout_p,
                   HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, DROPOUT: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    row_ok = rows < M
    col_ok = cols < N
    mask = row_ok[:, None] & col_ok[None, :]
    h, keep = _ln_input(X, BIAS, R, SEED, rows, cols, mask, stride_x, stride_r, N, dropout_p,
                        HAS_BIAS, HAS_RESIDUAL, DROPOUT)
    mean = tl.sum(h, axis=1) / N
    hc = tl.where(mask, h - mean[:, None], 0.0)
    var = tl.sum(hc * hc, axis=1) / N
    rstd = 1.0 / tl.sqrt(var + eps)
    w = tl.load(W + cols, mask=col_ok, other=0.0).to(tl.float32)
    b = tl.load(B + cols, mask=col_ok, other=0.0).to(tl.float32)
    y = hc * rstd[:, None] * w[None, :] + b[None, :]
    tl.store(Y + rows.to(tl.int64)[:, None] * stride_y + cols[None, :], y.to(Y.dtype.element_ty), mask=mask)
    tl.store(Mean + rows, mean, mask=row_ok)
    tl.store(Rstd + rows, rstd, mask=row_ok)


@triton.jit
def _ln_bwd_kernel(X,  # (M, N) the forward's input rows
                   BIAS,  # (N,) the sublayer's linear bias (HAS_BIAS)
                   R,  # (M, N) residual rows (HAS_RESIDUAL)
                   W,  # (N,) LayerNorm weight
                   DY,  # (M, N) output gradient, row stride stride_dy
                   DX,  # (M, N) out: x's gradient (x's dtype)
                   DR,  # (M, N) out: the residual's gradient (STORE_DR: it differs from dx)
                   Mean,  # (M,) fp32 the forward's row mean
                   Rstd,  # (M,) fp32 the forward's row 1 / std
                   SEED,  # (1,) int64 Philox seed (DROPOUT)
                   DW,  # (G, N) fp32 out: this program's partial sum of dweight (row pid)
                   DB,  # (G, N) fp32 out: partial sums of dln_bias
                   DBIAS,  # (G, N) fp32 out: partial sums of dbias (HAS_BIAS)
                   stride_x, stride_r, stride_dy, stride_dx, stride_dr, M, N, rows_per_program, dropout_p,
                   HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, DROPOUT: tl.constexpr,
                   STORE_DR: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    # program pid owns rows [pid * rows_per_program, ...) and writes its own partial dW, dB, dBias rows
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    col_ok = cols < N
    w = tl.load(W + cols, mask=col_ok, other=0.0).to(tl.float32)
    dw = tl.zeros((BLOCK_N,), dtype=tl.float32)
    db = tl.zeros((BLOCK_N,), dtype=tl.float32)
    dbias = tl.zeros((BLOCK_N,), dtype=tl.float32)
    row_start = pid * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, M)
    for first in range(row_start, row_end, BLOCK_M):
        rows = first + tl.arange(0, BLOCK_M)
        row_ok = rows < row_end
        mask = row_ok[:, None] & col_ok[None, :]
        rows64 = rows.to(tl.int64)[:, None]
        h, keep = _ln_input(X, BIAS, R, SEED, rows, cols, mask, stride_x, stride_r, N, dropout_p,
                            HAS_BIAS, HAS_RESIDUAL, DROPOUT)
        dy = tl.load(DY + rows64 * stride_dy + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        mean = tl.load(Mean + rows, mask=row_ok, other=0.0)
        rstd = tl.load(Rstd + rows, mask=row_ok, other=0.0)
        xhat = tl.where(mask, (h - mean[:, None]) * rstd[:, None], 0.0)
        wdy = w[None, :] * dy
        c1 = tl.sum(xhat * wdy, axis=1) / N
        c2 = tl.sum(wdy, axis=1) / N
        dh = (wdy - (xhat * c1[:, None] + c2[:, None])) * rstd[:, None]  # dL/dh: the residual's gradient
        if STORE_DR:
            tl.store(DR + rows64 * stride_dr + cols[None, :], dh.to(DR.dtype.element_ty), mask=mask)
        dx = dh
        if DROPOUT:
            dx = tl.where(keep, dh / (1.0 - dropout_p), 0.0)
        tl.store(DX + rows64 * stride_dx + cols[None, :], dx.to(DX.dtype.element_ty), mask=mask)
        dw += tl.sum(dy * xhat, axis=0)
        db += tl.sum(dy, axis=0)
        if HAS_BIAS:
            dbias += tl.sum(tl.where(mask, dx, 0.0), axis=0)
    tl.store(DW + pid * N + cols, dw, mask=col_ok)
    tl.store(DB + pid * N + cols, db, mask=col_ok)
    if HAS_BIAS:
        tl.store(DBIAS + pid * N + cols, dbias, mask=col_ok)


@triton.jit
def _ln_reduce_kernel(DW_P,  # (G, N) fp32 partial sums of dweight
                      DB_P,  # (G, N) fp32 partial sums of dln_bias
                      DBIAS_P,  # (G, N) fp32 partial sums of dbias (HAS_BIAS)
                      DW,  # (N,) out: dweight, weight's dtype
                      DB,  # (N,) out: dln_bias
                      DBIAS,  # (N,) out: dbias (HAS_BIAS)
                      G, N, HAS_BIAS: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr):
    """Column sums of the (G, N) fp32 partials of dweight, dln_bias (and dbias), cast to their dtypes."""
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < N
    dw = tl.zeros((BLOCK_N,), dtype=tl.float32)
    db = tl.zeros((BLOCK_N,), dtype=tl.float32)
    dbias = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for first in range(0, G, BLOCK_G):
        g = first + tl.arange(0, BLOCK_G)
        mask = (g < G)[:, None] & col_ok[None, :]
        offs = g.to(tl.int64)[:, None] * N + cols[None, :]
        dw += tl.sum(tl.load(DW_P + offs, mask=mask, other=0.0), axis=0)
        db += tl.sum(tl.load(DB_P + offs, mask=mask, other=0.0), axis=0)
        if HAS_BIAS:
            dbias += tl.sum(tl.load(DBIAS_P + offs, mask=mask, other=0.0), axis=0)
    tl.store(DW + cols, dw.to(DW.dtype.element_ty), mask=col_ok)
    tl.store(DB + cols, db.to(DB.dtype.element_ty), mask=col_ok)
    if HAS_BIAS:
        tl.store(DBIAS + cols, dbias.to(DBIAS.dtype.element_ty), mask=col_ok)


# ---- launch shapes -------------------------------------------------------------------------------
def _launch(n: int, device: torch.device) -> tuple[int, int, dict]:
    """(BLOCK_M rows per block, BLOCK_N >= n, launch options) for rows of n columns."""
    block_n = next_power_of_2(n)
    if device.type != "cuda":
        return INTERPRET_ROWS, block_n, {}
    block_m = max(1, GPU_TILE_ELEMENTS // block_n)
    return block_m, block_n, _gpu_launch(block_m * block_n)


def _gpu_launch(tile: int) -> dict:
    # about 16-32 fp32 values of each live tile per thread (Liger-Kernel's and Triton's tutorial counts)
    return {"num_warps": 16 if tile >= 8192 else 8 if tile >= 2048 else 4}


def _backward_programs(m: int, device: torch.device) -> int:
    """How many programs share the rows in the backward: enough to fill the GPU a few times over,
    few enough that the (G, N) fp32 partials stay small next to x (G * N vs M * N)."""
    if device.type == "cuda":
        sms = multiprocessor_count(device.index if device.index is not None else torch.cuda.current_device())
        return max(1, min(m, 4 * sms))
    return max(1, min(m, 2))  # the interpreter runs programs one after another: fewer is faster


def _rows(t: Optional[torch.Tensor], n: int) -> Optional[torch.Tensor]:
    """(..., N) -> (M, N) with unit column stride (a view when the input allows)."""
    if t is None:
        return None
    t = t.reshape(-1, n)
    return t if t.stride(-1) == 1 else t.contiguous()


def _out_dtype(x: torch.Tensor, bias: Optional[torch.Tensor], residual: Optional[torch.Tensor]) -> torch.dtype:
    """y's dtype: the reference's x + bias + residual promotes."""
    dtype = x.dtype
    for t in (bias, residual):
        if t is not None and t.dtype != dtype:  # (promote_types dispatches an op: only when needed)
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype


# ---- operators -----------------------------------------------------------------------------------
@kernel_op("ln_fwd")
def ln_fwd(x: torch.Tensor, bias: Optional[torch.Tensor], residual: Optional[torch.Tensor], weight: torch.Tensor,
           ln_bias: torch.Tensor, seed: Optional[torch.Tensor], eps: float, dropout_p: float
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """y = LN(dropout(x + bias) + residual) (x's shape, the promoted dtype) and the per-row fp32 mean and
    1/std, each (M,).  seed: (1,) int64, read only when dropout_p > 0."""
    n = x.shape[-1]
    x2, r2 = _rows(x, n), _rows(residual, n)
    m = x2.shape[0]
    y = torch.empty((m, n), dtype=_out_dtype(x, bias, residual), device=x.device)
    mean = torch.empty(m, dtype=torch.float32, device=x.device)
    rstd = torch.empty(m, dtype=torch.float32, device=x.device)
    if m:
        block_m, block_n, options = _launch(n, x.device)
        with cuda_device_guard(x.device):
            launch(_ln_fwd_kernel, (cdiv(m, block_m),),
                   x2, bias if bias is not None else x2, r2 if r2 is not None else x2, weight, ln_bias, y, mean, rstd,
                   seed if seed is not None else weight, x2.stride(0), r2.stride(0) if r2 is not None else 0, y.stride(0),
                   m, n, eps, dropout_p, HAS_BIAS=bias is not None, HAS_RESIDUAL=residual is not None,
                   DROPOUT=dropout_p > 0, BLOCK_M=block_m, BLOCK_N=block_n, **options)
    return y.view(x.shape), mean, rstd


@kernel_op("ln_bwd")
def ln_bwd(dy: torch.Tensor, x: torch.Tensor, bias: Optional[torch.Tensor], residual: Optional[torch.Tensor],
           weight: torch.Tensor, ln_bias: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor,
           seed: Optional[torch.Tensor], dropout_p: float
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dresidual, dweight, dln_bias, dbias) for y = LN(dropout(x + bias) + residual).

    dresidual is returned separately only when it differs from dx (dropout, or another dtype); else
    it is empty and dx serves both.  dbias is empty without a bias."""
    n = x.shape[-1]
    x2, r2, dy2 = _rows(x, n), _rows(residual, n), _rows(dy, n)
    m = x2.shape[0]
    device = x.device
    store_dr = residual is not None and (dropout_p > 0 or residual.dtype != x.dtype)
    dx = torch.empty((m, n), dtype=x.dtype, device=device)
    dr = torch.empty((m, n) if store_dr else (0,), dtype=residual.dtype if store_dr else x.dtype, device=device)
    dw = torch.empty(n, dtype=weight.dtype, device=device)
    db = torch.empty(n, dtype=ln_bias.dtype, device=device)
    dbias = torch.empty(n if bias is not None else 0, dtype=bias.dtype if bias is not None else x.dtype, device=device)
    programs = _backward_programs(m, device)
    # each launched program writes its whole partial rows (zeros where it owns no rows): no zero-fill
    dw_p, db_p = (torch.empty((programs, n), dtype=torch.float32, device=device) for _ in range(2))
    dbias_p = torch.empty((programs, n) if bias is not None else (0,), dtype=torch.float32, device=device)
    block_m, block_n, options = _launch(n, device)
    with cuda_device_guard(device):
        if m:
            launch(_ln_bwd_kernel, (programs,),
                   x2, bias if bias is not None else x2, r2 if r2 is not None else x2, weight, dy2, dx,
                   dr if store_dr else x2, mean, rstd, seed if seed is not None else weight,
                   dw_p, db_p, dbias_p if bias is not None else weight, x2.stride(0), r2.stride(0) if r2 is not None else 0,
                   dy2.stride(0), dx.stride(0), dr.stride(0) if store_dr else 0, m, n, cdiv(m, programs),
                   dropout_p, HAS_BIAS=bias is not None, HAS_RESIDUAL=residual is not None, DROPOUT=dropout_p > 0,
                   STORE_DR=store_dr, BLOCK_M=block_m, BLOCK_N=block_n, **options)
        reduce_n = min(block_n, 256 if device.type == "cuda" else block_n)
        launch(_ln_reduce_kernel, (cdiv(n, reduce_n),), dw_p, db_p, dbias_p if bias is not None else dw_p, dw, db,
               dbias if bias is not None else weight,
               programs if m else 0, n, HAS_BIAS=bias is not None, BLOCK_G=32 if device.type == "cuda" else 2,
               BLOCK_N=reduce_n)
    return dx.view(x.shape), dr.view(residual.shape) if store_dr else dr, dw, db, dbias


def _setup(ctx, inputs, output) -> None:
    ctx.set_materialize_grads(False)  # the statistics' gradients are never used: no zeros to make
    x, bias, residual, weight, ln_bias, seed, eps, dropout_p = inputs
    _, mean, rstd = output
    ctx.save_for_backward(x, bias, residual, weight, ln_bias, mean, rstd, seed)
    ctx.dropout_p = dropout_p


def _backward_with(bwd: Callable) -> Callable:
    """The backward formula, calling `bwd` (the registered operator, or its plain launcher when eager)."""

    def backward(ctx, dy, *_stats):
        x, bias, residual, weight, ln_bias, mean, rstd, seed = ctx.saved_tensors
        dx, dr, dw, db, dbias = bwd(dy, x, bias, residual, weight, ln_bias, mean, rstd, seed, ctx.dropout_p)
        if residual is not None and dr.numel() == 0 and residual.numel():
            dr = dx  # d(h)/d(residual) = 1 and, without dropout, d(h)/dx = 1 too: one tensor serves both
        return (dx, dbias if bias is not None else None, dr if residual is not None else None, dw, db, None, None,
                None)
    return backward


ln_fwd.register_autograd(_backward_with(ln_bwd), setup_context=_setup)
_LayerNormEager = eager_function(ln_fwd.launcher, _setup, _backward_with(ln_bwd.launcher))


# ---- checks and functionals ----------------------------------------------------------------------
def _check(x: torch.Tensor, weight: torch.Tensor, ln_bias: torch.Tensor, residual: Optional[torch.Tensor],
           bias: Optional[torch.Tensor] = None, dropout_p: float = 0.0) -> None:
    op = "layer_norm"
    check_dtype(op, "x", x)
    n = x.shape[-1]
    if not 1 <= n <= MAX_HIDDEN:
        raise ValueError(f"{op}: hidden size (last dim of x) is {n}: it must be in 1..{MAX_HIDDEN} "
                         "(one row per register block)")
    for name, p in (("weight", weight), ("bias", ln_bias), ("the sublayer bias", bias)):
        if p is None:
            continue
        check_dtype(op, name, p)
        if tuple(p.shape) != (n,):
            raise ValueError(f"{op}: {name} has shape {tuple(p.shape)}: it must be ({n},), the last dim of x")
    if residual is not None:
        check_dtype(op, "residual", residual)
        if residual.shape != x.shape:
            raise ValueError(f"{op}: residual has shape {tuple(residual.shape)}: it must equal x's "
                             f"{tuple(x.shape)}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"{op}: dropout_p is {dropout_p}: it must be in [0, 1)")
    if dropout_p > 0 and x.numel() >= 2 ** 31:
        raise ValueError(f"{op}: x has {x.numel()} elements with dropout: it must be < 2**31 (the dropout "
                         "stream's 32-bit counter)")
    check_launchable(op, _ln_fwd_kernel, [t for t in (x, weight, ln_bias, residual, bias) if t is not None])


def bias_dropout_add_layer_norm_with_seed(x: torch.Tensor, bias: Optional[torch.Tensor],
                                          residual: Optional[torch.Tensor], weight: Optional[torch.Tensor],
                                          ln_bias: Optional[torch.Tensor], eps: float = 1e-12, dropout_p: float = 0.0,
                                          seed: Optional[torch.Tensor | int] = None) -> torch.Tensor:
    """`bias_dropout_add_layer_norm` with an explicit dropout seed (an int or a (1,) int64 tensor; None:
    drawn on the device per call); tests compare its dropout with `layer_norm_keep_mask(seed, ...)`."""
    n = x.shape[-1]
    if weight is None:
        weight = torch.ones(n, dtype=x.dtype, device=x.device)
    if ln_bias is None:
        ln_bias = torch.zeros(n, dtype=weight.dtype, device=x.device)
    _check(x, weight, ln_bias, residual, bias, dropout_p)
    seed = call_seed(dropout_p, seed, x.device)
    forward = ln_fwd if compiling() else _LayerNormEager.apply
    return forward(x, bias, residual, weight, ln_bias, seed, float(eps), float(dropout_p))[0]


def bias_dropout_add_layer_norm(x: torch.Tensor, bias: Optional[torch.Tensor], residual: Optional[torch.Tensor],
                                weight: Optional[torch.Tensor], ln_bias: Optional[torch.Tensor], eps: float = 1e-12,
                                dropout_p: float = 0.0) -> torch.Tensor:
    """y = LayerNorm(dropout(x + bias) + residual) over the last dim, in one kernel (and one backward).

    x, residual: (..., N) with N <= 8192; bias (the sublayer's linear bias), weight, ln_bias: (N,);
    bias and residual may be None.  Dropout (probability dropout_p, survivors scaled by 1/(1-p)) draws
    a Philox seed on the device per call (`bias_dropout_add_layer_norm_with_seed` takes one).
    The signature and contract of `uer_ds.kernels.reference.bias_dropout_add_layer_norm`.
    ValueError for shapes, dtypes or a dropout_p outside [0, 1).
    """
    return bias_dropout_add_layer_norm_with_seed(x, bias, residual, weight, ln_bias, eps, dropout_p)


def layer_norm(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor], eps: float = 1e-12,
               residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """y = LayerNorm(x + residual) over the last dim; x, residual: (..., N) with N <= 8192; weight, bias: (N,).

    The signature and contract of `uer_ds.kernels.reference.layer_norm`; differentiable in x, weight,
    bias and residual.  weight/bias None mean 1/0 (no gradient), as in F.layer_norm.  x and residual
    of different dtypes give y in their promoted dtype, like the reference's x + residual.
    """
    return bias_dropout_add_layer_norm_with_seed(x, None, residual, weight, bias, eps)


class FusedLayerNorm(nn.Module):
    """LayerNorm(x + residual) in Triton; parameters and state_dict as uer_ds.models.layers.LayerNorm."""

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(hidden_size))
        self.bias = nn.Parameter(torch.empty(hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        return layer_norm(x, self.weight, self.bias, self.eps, residual=residual)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def layer_norm_keep_mask(seed: torch.Tensor | int, shape: tuple[int, int], dropout_p: float,
                         device: torch.device | str = "cuda") -> torch.Tensor:
    """The (M, N) bool mask of the elements that bias_dropout_add_layer_norm_with_seed(..., seed=seed) keeps,
    for rows of N columns (how its dropout is tested against the reference)."""
    m, n = shape
    keep = torch.empty((m, n), dtype=torch.int8, device=device)
    check_launchable("dropout_keep_mask", _ln_keep_kernel, [keep])
    if keep.numel():
        block_n = next_power_of_2(n)
        with cuda_device_guard(keep.device):
            _ln_keep_kernel[(cdiv(m, 16),)](keep, as_seed(seed, keep.device), m, n, float(dropout_p),
                                                   BLOCK_M=16, BLOCK_N=block_n)
    return keep.bool()
