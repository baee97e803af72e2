"""Fused LayerNorm with an optional residual add, y = LN(x + residual), forward and backward in Triton.

Layers (as Liger-Kernel): jit kernels `_layer_norm_fwd_kernel` / `_layer_norm_bwd_kernel` ->
launchers `layer_norm_forward` / `layer_norm_backward` -> `LayerNormFunction` (autograd) ->
`FusedLayerNorm` (nn.Module, the reference's parameter names: weight, bias) -> `layer_norm`
(functional, the signature of `uer_ds.kernels.reference.layer_norm`).

Numerics: inputs fp32/fp16/bf16, statistics and every sum in fp32 (the x + residual sum too, where
the reference rounds it to the input dtype first). Forward: one row per program on GPU (hidden size
<= 8192, one register block; the interpreter takes 16 rows per program, same code). Backward: a grid
of G programs, each walking a contiguous run of rows, writes dx and its own fp32 partial
dweight/dbias rows (G, N); a second reduction sums the G partials, so no program waits on a lock or
an atomic and the result is deterministic. The backward recomputes x + residual from both inputs
rather than storing the sum (same traffic, one tensor less written in the forward, which is all
inference runs).
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import nn

from uer_ds.kernels.utils import check_dtype, check_launchable, cuda_device_guard, multiprocessor_count

MAX_HIDDEN = 8192  # one row lives in one register block; the bound (BERT ... LLaMA-7B widths)
# Rows per program under the interpreter, whose cost is per program and per op rather than per
# element: 16 rows a block ran (615, 123) fwd+bwd in 0.5 s against 3.1 s one row at a time.
INTERPRET_ROWS = 16


# ---- jit kernels ---------------------------------------------------------------------------------
@triton.jit
def _layer_norm_fwd_kernel(X, R, W, B, Y, Mean, Rstd, stride_x, stride_r, stride_y, M, N, eps,
                           HAS_RESIDUAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    # BLOCK_M rows per program: 1 on GPU; more under the interpreter, whose cost is per program and op
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    row_ok = rows < M
    col_ok = cols < N
    mask = row_ok[:, None] & col_ok[None, :]
    rows64 = rows.to(tl.int64)[:, None]  # M * N may pass 2**31
    x = tl.load(X + rows64 * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        x += tl.load(R + rows64 * stride_r + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=1) / N
    xc = tl.where(mask, x - mean[:, None], 0.0)
    var = tl.sum(xc * xc, axis=1) / N
    rstd = 1.0 / tl.sqrt(var + eps)
    w = tl.load(W + cols, mask=col_ok, other=0.0).to(tl.float32)
    b = tl.load(B + cols, mask=col_ok, other=0.0).to(tl.float32)
    y = xc * rstd[:, None] * w[None, :] + b[None, :]
    tl.store(Y + rows64 * stride_y + cols[None, :], y.to(Y.dtype.element_ty), mask=mask)
    tl.store(Mean + rows, mean, mask=row_ok)
    tl.store(Rstd + rows, rstd, mask=row_ok)


@triton.jit
def _layer_norm_bwd_kernel(X, R, W, DY, DX, Mean, Rstd, DW, DB, stride_x, stride_r, stride_dy, stride_dx,
                           M, N, rows_per_program, HAS_RESIDUAL: tl.constexpr, BLOCK_M: tl.constexpr,
                           BLOCK_N: tl.constexpr):
    # program pid owns rows [pid * rows_per_program, ...) and writes its own partial dW, dB rows
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    col_ok = cols < N
    w = tl.load(W + cols, mask=col_ok, other=0.0).to(tl.float32)
    dw = tl.zeros((BLOCK_N,), dtype=tl.float32)
    db = tl.zeros((BLOCK_N,), dtype=tl.float32)
    row_start = pid * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, M)
    for first in range(row_start, row_end, BLOCK_M):
        rows = first + tl.arange(0, BLOCK_M)
        row_ok = rows < row_end
        mask = row_ok[:, None] & col_ok[None, :]
        rows64 = rows.to(tl.int64)[:, None]
        x = tl.load(X + rows64 * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:
            x += tl.load(R + rows64 * stride_r + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + rows64 * stride_dy + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        mean = tl.load(Mean + rows, mask=row_ok, other=0.0)
        rstd = tl.load(Rstd + rows, mask=row_ok, other=0.0)
        xhat = tl.where(mask, (x - mean[:, None]) * rstd[:, None], 0.0)
        wdy = w[None, :] * dy
        c1 = tl.sum(xhat * wdy, axis=1) / N
        c2 = tl.sum(wdy, axis=1) / N
        dx = (wdy - (xhat * c1[:, None] + c2[:, None])) * rstd[:, None]
        tl.store(DX + rows64 * stride_dx + cols[None, :], dx.to(DX.dtype.element_ty), mask=mask)
        dw += tl.sum(dy * xhat, axis=0)
        db += tl.sum(dy, axis=0)
    tl.store(DW + pid * N + cols, dw, mask=col_ok)
    tl.store(DB + pid * N + cols, db, mask=col_ok)


# ---- launchers -----------------------------------------------------------------------------------
def _launch(n: int, device: torch.device) -> tuple[int, int, dict]:
    """(BLOCK_M rows per block, BLOCK_N >= n, launch options) for rows of n columns."""
    block_n = triton.next_power_of_2(n)
    if device.type != "cuda":
        return INTERPRET_ROWS, block_n, {}
    return 1, block_n, _gpu_launch(block_n)


def _gpu_launch(block_n: int) -> dict:
    # one row per program; Liger-Kernel's and Triton's tutorial warp counts, so each thread holds at
    # most ~16-32 fp32 values of the row
    return {"num_warps": 16 if block_n >= 8192 else 8 if block_n >= 2048 else 4}


def _rows(t: torch.Tensor, n: int) -> torch.Tensor:
    """(..., N) -> (M, N) with unit column stride (a view when the input allows)."""
    t = t.reshape(-1, n)
    return t if t.stride(-1) == 1 else t.contiguous()


def _check(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, residual: Optional[torch.Tensor]) -> None:
    check_dtype("layer_norm", "x", x)
    n = x.shape[-1]
    if not 1 <= n <= MAX_HIDDEN:
        raise ValueError(f"layer_norm: hidden size (last dim of x) is {n}: it must be in 1..{MAX_HIDDEN} "
                         "(one row per program)")
    for name, p in (("weight", weight), ("bias", bias)):
        check_dtype("layer_norm", name, p)
        if tuple(p.shape) != (n,):
            raise ValueError(f"layer_norm: {name} has shape {tuple(p.shape)}: it must be ({n},), the last dim of x")
    if residual is not None:
        if residual.shape != x.shape:
            raise ValueError(f"layer_norm: residual has shape {tuple(residual.shape)}: it must equal x's "
                             f"{tuple(x.shape)}")
        if residual.dtype != x.dtype:
            raise ValueError(f"layer_norm: residual has dtype {residual.dtype}: it must equal x's {x.dtype}")


def layer_norm_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                       residual: Optional[torch.Tensor] = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """y = LN(x + residual) (x's shape and dtype), and the per-row fp32 mean and 1/std, each (M,)."""
    _check(x, weight, bias, residual)
    device = check_launchable("layer_norm", _layer_norm_fwd_kernel,
                              [x, weight, bias] + ([residual] if residual is not None else []))
    n = x.shape[-1]
    x2 = _rows(x, n)
    r2 = _rows(residual, n) if residual is not None else x2
    m = x2.shape[0]
    y = torch.empty((m, n), dtype=x.dtype, device=device)
    mean = torch.empty(m, dtype=torch.float32, device=device)
    rstd = torch.empty(m, dtype=torch.float32, device=device)
    if m:
        block_m, block_n, launch = _launch(n, device)
        with cuda_device_guard(device):
            _layer_norm_fwd_kernel[(triton.cdiv(m, block_m),)](
                x2, r2, weight, bias, y, mean, rstd, x2.stride(0), r2.stride(0), y.stride(0), m, n, eps,
                HAS_RESIDUAL=residual is not None, BLOCK_M=block_m, BLOCK_N=block_n, **launch)
    return y.view(x.shape), mean, rstd


def _backward_programs(m: int, device: torch.device) -> int:
    """How many programs share the rows in the backward: enough to fill the GPU a few times over,
    few enough that the (G, N) fp32 partials stay small next to x (G * N vs M * N)."""
    if device.type == "cuda":
        sms = multiprocessor_count(device.index if device.index is not None else torch.cuda.current_device())
        return max(1, min(m, 4 * sms))
    return max(1, min(m, 2))  # the interpreter runs programs one after another: fewer is faster


def layer_norm_backward(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor,
                        rstd: torch.Tensor, residual: Optional[torch.Tensor] = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dx (also the residual's gradient), dweight and dbias (in weight's dtype) for y = LN(x + residual)."""
    n = x.shape[-1]
    x2 = _rows(x, n)
    r2 = _rows(residual, n) if residual is not None else x2
    dy2 = _rows(dy, n)
    m = x2.shape[0]
    device = x.device
    dx = torch.empty((m, n), dtype=x.dtype, device=device)
    programs = _backward_programs(m, device)
    # every launched program writes its whole partial row (zeros where it owns no rows): no zero-fill
    # needed, except with no rows, where nothing is launched
    alloc = torch.empty if m else torch.zeros
    dw_partial = alloc((programs, n), dtype=torch.float32, device=device)
    db_partial = alloc((programs, n), dtype=torch.float32, device=device)
    if m:
        rows_per_program = triton.cdiv(m, programs)
        block_m, block_n, launch = _launch(n, device)
        with cuda_device_guard(device):
            _layer_norm_bwd_kernel[(programs,)](
                x2, r2, weight, dy2, dx, mean, rstd, dw_partial, db_partial, x2.stride(0), r2.stride(0),
                dy2.stride(0), dx.stride(0), m, n, rows_per_program, HAS_RESIDUAL=residual is not None,
                BLOCK_M=block_m, BLOCK_N=block_n, **launch)
    # the second reduction: (G, N) fp32 partials -> (N,)
    return dx.view(x.shape), dw_partial.sum(0).to(weight.dtype), db_partial.sum(0).to(weight.dtype)


# ---- autograd ------------------------------------------------------------------------------------
class LayerNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps, residual):
        y, mean, rstd = layer_norm_forward(x, weight, bias, eps, residual)
        ctx.save_for_backward(x, residual, weight, mean, rstd)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, residual, weight, mean, rstd = ctx.saved_tensors
        dx, dw, db = layer_norm_backward(dy, x, weight, mean, rstd, residual)
        # d(x + residual)/dx = d(x + residual)/dresidual = 1: both get the same gradient
        return dx, dw, db, None, dx if residual is not None else None


# ---- module and functional -----------------------------------------------------------------------
def layer_norm(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor], eps: float = 1e-12,
               residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """y = LayerNorm(x + residual) over the last dim; x, residual: (..., N) with N <= 8192; weight, bias: (N,).

    The signature and contract of `uer_ds.kernels.reference.layer_norm`; differentiable in x, weight,
    bias and residual.  weight/bias None mean 1/0 (no gradient), as in F.layer_norm.  x and residual
    of different dtypes are promoted to a common one first, like the reference's x + residual.
    """
    if residual is not None and residual.dtype != x.dtype:  # e.g. under autocast: add as the reference does
        common = torch.promote_types(x.dtype, residual.dtype)
        x, residual = x.to(common), residual.to(common)
    n = x.shape[-1]
    if weight is None:
        weight = torch.ones(n, dtype=x.dtype, device=x.device)
    if bias is None:
        bias = torch.zeros(n, dtype=weight.dtype, device=x.device)
    return LayerNormFunction.apply(x, weight, bias, float(eps), residual)


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
