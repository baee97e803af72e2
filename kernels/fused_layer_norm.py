"""Fused LayerNorm with an optional residual add, y = LN(x + residual), forward and backward in Triton.

Layers (as Liger-Kernel): jit kernels `_layer_norm_fwd_kernel` / `_layer_norm_bwd_kernel` ->
launchers `layer_norm_forward` / `layer_norm_backward` -> `LayerNormFunction` (autograd) ->
`FusedLayerNorm` (nn.Module, the reference's parameter names: weight, bias) -> `layer_norm`
(functional, the signature of `uer_ds.kernels.reference.layer_norm`).

Numerics: inputs fp32/fp16/bf16, statistics and every sum in fp32 (the x + residual sum too, where the
reference rounds it to the input dtype first).  Forward: one row per program (hidden size <= 8192, one
register block).  Backward: a grid of G programs, each walking a contiguous run of rows, writes dx
and its own fp32 partial dweight/dbias rows (G, N); a second reduction sums the G partials, so no
program waits on a lock or an atomic and the result is deterministic.  The backward recomputes
x + residual from both inputs rather than storing the sum (same traffic, one tensor less written in
the forward, which is all inference runs).
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import nn

from uer_ds.kernels.utils import check_dtype, check_launchable, cuda_device_guard

MAX_HIDDEN = 8192  # one row lives in one register block; the bound (BERT ... LLaMA-7B widths)


# ---- jit kernels ---------------------------------------------------------------------------------
@triton.jit
def _layer_norm_fwd_kernel(X, R, W, B, Y, Mean, Rstd, stride_x, stride_r, stride_y, N, eps,
                           HAS_RESIDUAL: tl.constexpr, BLOCK_N: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        x += tl.load(R + row * stride_r + cols, mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=0) / N
    xc = tl.where(mask, x - mean, 0.0)
    var = tl.sum(xc * xc, axis=0) / N
    rstd = 1.0 / tl.sqrt(var + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(B + cols, mask=mask, other=0.0).to(tl.float32)
    y = xc * rstd * w + b
    tl.store(Y + row * stride_y + cols, y.to(Y.dtype.element_ty), mask=mask)
    tl.store(Mean + row, mean)
    tl.store(Rstd + row, rstd)


@triton.jit
def _layer_norm_bwd_kernel(X, R, W, DY, DX, Mean, Rstd, DW, DB, stride_x, stride_r, stride_dy, stride_dx,
                           M, N, rows_per_program, HAS_RESIDUAL: tl.constexpr, BLOCK_N: tl.constexpr):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    dw = tl.zeros((BLOCK_N,), dtype=tl.float32)
    db = tl.zeros((BLOCK_N,), dtype=tl.float32)
    row_start = pid * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, M)
    # 64-bit row offsets (M * N may pass 2**31); the pointers then walk one row per iteration
    first = row_start.to(tl.int64)
    X += first * stride_x
    R += first * stride_r
    DY += first * stride_dy
    DX += first * stride_dx
    for row in range(row_start, row_end):
        x = tl.load(X + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:
            x += tl.load(R + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + cols, mask=mask, other=0.0).to(tl.float32)
        mean = tl.load(Mean + row)
        rstd = tl.load(Rstd + row)
        xhat = tl.where(mask, (x - mean) * rstd, 0.0)
        wdy = w * dy
        c1 = tl.sum(xhat * wdy, axis=0) / N
        c2 = tl.sum(wdy, axis=0) / N
        dx = (wdy - (xhat * c1 + c2)) * rstd
        tl.store(DX + cols, dx.to(DX.dtype.element_ty), mask=mask)
        dw += dy * xhat
        db += dy
        X += stride_x
        R += stride_r
        DY += stride_dy
        DX += stride_dx
    tl.store(DW + pid * N + cols, dw, mask=mask)
    tl.store(DB + pid * N + cols, db, mask=mask)


# ---- launchers -----------------------------------------------------------------------------------
def _num_warps(block_n: int) -> int:
    # Liger-Kernel's and Triton's tutorial choice: more warps as the row grows, so each thread holds
    # at most ~16-32 fp32 values of the row.
    return 16 if block_n >= 8192 else 8 if block_n >= 2048 else 4


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
        block_n = triton.next_power_of_2(n)
        with cuda_device_guard(device):
            _layer_norm_fwd_kernel[(m,)](
                x2, r2, weight, bias, y, mean, rstd, x2.stride(0), r2.stride(0), y.stride(0), n, eps,
                HAS_RESIDUAL=residual is not None, BLOCK_N=block_n, num_warps=_num_warps(block_n))
    return y.view(x.shape), mean, rstd


def _backward_programs(m: int, device: torch.device) -> int:
    """How many programs share the rows in the backward: enough to fill the GPU a few times over,
    few enough that the (G, N) fp32 partials stay small next to x (G * N vs M * N)."""
    if device.type == "cuda":
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        return max(1, min(m, 4 * sms))
    return max(1, min(m, 4))  # the interpreter runs programs one after another: fewer is faster


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
    dw_partial = torch.zeros((programs, n), dtype=torch.float32, device=device)
    db_partial = torch.zeros((programs, n), dtype=torch.float32, device=device)
    if m:
        rows_per_program = triton.cdiv(m, programs)
        block_n = triton.next_power_of_2(n)
        with cuda_device_guard(device):
            _layer_norm_bwd_kernel[(programs,)](
                x2, r2, weight, dy2, dx, mean, rstd, dw_partial, db_partial, x2.stride(0), r2.stride(0),
                dy2.stride(0), dx.stride(0), m, n, rows_per_program, HAS_RESIDUAL=residual is not None,
                BLOCK_N=block_n, num_warps=_num_warps(block_n))
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
    bias and residual.  weight/bias None mean 1/0 (no gradient), as in F.layer_norm.
    """
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
