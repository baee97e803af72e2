"""Varlen FlashAttention-2 in Triton: attention within each of B packed sequences, forward and backward.

`varlen_attention(q, k, v, cu_seqlens, max_seqlen, causal=False, dropout_p=0.0, softmax_scale=None)`:
q, k, v (N, H, D) hold the tokens of B sequences one after another (no padding anywhere), sequence b
the tokens [cu_seqlens[b], cu_seqlens[b + 1]); each token attends only to its own sequence's tokens
(causal: to those at or before it).  This is the attention of an unpadded transformer (NVIDIA's and
MosaicBERT's fast BERTs, FlashAttention-2's `flash_attn_varlen_func`): every other op of the layer
then runs on the N real tokens only.

Layers (as Liger-Kernel): jit kernels `_varlen_fwd_kernel`, `_varlen_bwd_preprocess_kernel`,
`_varlen_bwd_dkdv_kernel`, `_varlen_bwd_dq_kernel` -> operators `uer_ds::varlen_attn_fwd` /
`uer_ds::varlen_attn_bwd` (`kernel_op`: torch.library.triton_op on a GPU, so torch.compile traces
into the kernels and CUDA graphs capture them) with autograd registered on the forward ->
`varlen_flash_attention` / `varlen_attention` (functionals, check the inputs) -> `VarlenFlashAttention` (nn.Module).

Algorithm (Dao, FlashAttention-2, 2023; the varlen indexing of its `flash_attn_varlen_func`): a
program per (query block, head, sequence) reads its sequence's bounds from cu_seqlens and walks the
key blocks of that sequence only, with an online softmax (running max and sum, rescaled
accumulator), saving the row log-sum-exp (fp32, base 2).  The grid's first axis covers max_seqlen,
a host int: programs past their sequence's end do nothing.  Key blocks wholly inside the sequence
(and, causal, wholly at or before the block's first query) skip the element-wise mask.  The backward
recomputes P = exp2(S - lse): one program per key block accumulates dK, dV over the query blocks,
one per query block accumulates dQ over the key blocks (no atomics: deterministic); delta =
rowsum(dO * O) comes from a small preprocessing kernel.  Three launches, no torch op.  The per-tile
arithmetic is shared with the padded kernels (kernels/src/attention_tile.py).

Dropout: keep(b, h, i, j) = Philox(seed + b * H + h, i * L_b + j) >= p (Triton's `tl.rand`), seed a
(1,) int64 device tensor drawn per call (graph-safe, no host read), the same expression in every
kernel, so the backward regenerates the forward's mask; a sequence's mask depends only on its own
length, and `dropout_keep_mask` materialises it for tests.

Interpreter (TRITON_INTERPRET=1, CPU): bf16 `tl.dot` is wrong there (it multiplies raw bits), so the
launcher sets UPCAST and the kernels feed fp32 operands to every dot; on a GPU the dots take the
input dtype (bf16/fp16 tensor cores, fp32 accumulation; fp32 inputs use IEEE fp32, not TF32).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import triton
import triton.language as tl
from torch import nn

from uer_ds.kernels.attention_tile import dkdv_step, dq_step, dropout_keep, softmax_finish, softmax_step
from uer_ds.kernels.utils import (as_seed, cdiv, check_dtype, check_launchable, compiling, cuda_device_guard,
                                  dropout_seed, eager_function, interpreting, kernel_op, launch)

HEAD_DIMS = (16, 32, 64, 128)  # powers of two that tl.dot tiles take (>= 16); the issue asks 32/64/128
LOG2E = 1.4426950408889634


# ---- jit kernels ---------------------------------------------------------------------------------
@triton.jit
def _fwd_inner(acc, l_i, m_i, q, K_h, V_h, stride_kn, stride_vn, offs_m, offs_d, lo, hi, L, qk_scale, seed, bh,
               dropout_p, BLOCK_N: tl.constexpr, MASK: tl.constexpr, CAUSAL: tl.constexpr, DROPOUT: tl.constexpr,
               UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr):
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n64 = offs_n.to(tl.int64)
        if MASK:
            kt = tl.load(K_h + n64[None, :] * stride_kn + offs_d[:, None], mask=offs_n[None, :] < L, other=0.0)
            v = tl.load(V_h + n64[:, None] * stride_vn + offs_d[None, :], mask=offs_n[:, None] < L, other=0.0)
        else:
            kt = tl.load(K_h + n64[None, :] * stride_kn + offs_d[:, None])  # (D, BLOCK_N)
            v = tl.load(V_h + n64[:, None] * stride_vn + offs_d[None, :])  # (BLOCK_N, D)
        if UPCAST:
            kt = kt.to(tl.float32)
            v = v.to(tl.float32)
        s = tl.dot(q, kt, input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N), log2 units
        if MASK:
            ok = offs_n[None, :] < L
            if CAUSAL:
                ok = ok & (offs_n[None, :] <= offs_m[:, None])
            s = tl.where(ok, s, float("-inf"))
        acc, l_i, m_i = softmax_step(acc, l_i, m_i, s, v, seed, bh, offs_m, offs_n, L, dropout_p, DROPOUT,
                                     DOT_PRECISION)
    return acc, l_i, m_i


@triton.jit
def _key_split(start_m, L, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr):
    """Key bounds for the query block at start_m: [0, mid) needs no mask, [mid, hi) does."""
    full = L // BLOCK_N * BLOCK_N  # key blocks wholly inside the sequence
    if CAUSAL:
        hi = tl.minimum(L, start_m + BLOCK_M)  # past the block's last query: never visible
        mid = tl.minimum((start_m + 1) // BLOCK_N * BLOCK_N, full)  # blocks at or before the first query
    else:
        hi = L
        mid = full
    return mid, hi


@triton.jit
def _varlen_fwd_kernel(Q, K, V, O, LSE, CU, SEED, qk_scale, dropout_p,
                       stride_qn, stride_qh, stride_kn, stride_kh, stride_vn, stride_vh, stride_on, stride_oh,
                       n_tokens, H, HEAD_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                       CAUSAL: tl.constexpr, DROPOUT: tl.constexpr, UPCAST: tl.constexpr,
                       DOT_PRECISION: tl.constexpr):
    start_m = tl.program_id(0) * BLOCK_M
    h = tl.program_id(1)
    b = tl.program_id(2)
    first = tl.load(CU + b)
    L = tl.load(CU + b + 1) - first
    if start_m < L:  # programs past the sequence's end have nothing to do
        offs_m = start_m + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_D)
        rows = (first + offs_m).to(tl.int64)
        row_ok = offs_m < L
        q = tl.load(Q + rows[:, None] * stride_qn + h * stride_qh + offs_d[None, :], mask=row_ok[:, None], other=0.0)
        if UPCAST:
            q = q.to(tl.float32)
        K_h = K + first.to(tl.int64) * stride_kn + h * stride_kh
        V_h = V + first.to(tl.int64) * stride_vn + h * stride_vh
        seed = 0
        if DROPOUT:
            seed = tl.load(SEED)
        bh = b * H + h
        m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
        l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
        acc = tl.zeros((BLOCK_M, HEAD_D), dtype=tl.float32)
        mid, hi = _key_split(start_m, L, BLOCK_M, BLOCK_N, CAUSAL)
        acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, K_h, V_h, stride_kn, stride_vn, offs_m, offs_d, 0, mid, L,
                                   qk_scale, seed, bh, dropout_p, BLOCK_N, False, CAUSAL, DROPOUT, UPCAST,
                                   DOT_PRECISION)
        acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, K_h, V_h, stride_kn, stride_vn, offs_m, offs_d, mid, hi, L,
                                   qk_scale, seed, bh, dropout_p, BLOCK_N, True, CAUSAL, DROPOUT, UPCAST,
                                   DOT_PRECISION)
        o, lse = softmax_finish(acc, l_i, m_i, dropout_p, DROPOUT)  # l = 0 only past the end (not stored)
        tl.store(O + rows[:, None] * stride_on + h * stride_oh + offs_d[None, :], o.to(O.dtype.element_ty),
                 mask=row_ok[:, None])
        tl.store(LSE + h.to(tl.int64) * n_tokens + rows, lse, mask=row_ok)


@triton.jit
def _varlen_bwd_preprocess_kernel(O, DO, DELTA, stride_on, stride_oh, stride_dn, stride_dh, n_tokens,
                                  HEAD_D: tl.constexpr, BLOCK: tl.constexpr):
    """delta = rowsum(dO * O), fp32 (H, N), over all tokens at once (sequence bounds do not matter)."""
    h = tl.program_id(1)
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    offs_d = tl.arange(0, HEAD_D)
    ok = rows < n_tokens
    r64 = rows.to(tl.int64)
    o = tl.load(O + r64[:, None] * stride_on + h * stride_oh + offs_d[None, :], mask=ok[:, None], other=0.0)
    do = tl.load(DO + r64[:, None] * stride_dn + h * stride_dh + offs_d[None, :], mask=ok[:, None], other=0.0)
    tl.store(DELTA + h.to(tl.int64) * n_tokens + r64, tl.sum(o.to(tl.float32) * do.to(tl.float32), 1), mask=ok)


@triton.jit
def _dkdv_inner(dk, dv, k, v, Q_h, DO_h, LSE_h, DELTA_h, stride_qn, stride_dn, offs_n, offs_d, lo, hi, L,
                qk_scale, seed, bh, dropout_p, BLOCK_M: tl.constexpr, MASK: tl.constexpr, DROPOUT: tl.constexpr,
                UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr):
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        m64 = offs_m.to(tl.int64)
        row_ok = offs_m < L  # queries past the end: zeros and lse = +inf, so P = 0 there
        q = tl.load(Q_h + m64[:, None] * stride_qn + offs_d[None, :], mask=row_ok[:, None], other=0.0)
        do = tl.load(DO_h + m64[:, None] * stride_dn + offs_d[None, :], mask=row_ok[:, None], other=0.0)
        lse = tl.load(LSE_h + m64, mask=row_ok, other=float("inf"))
        delta = tl.load(DELTA_h + m64, mask=row_ok, other=0.0)
        if UPCAST:
            q = q.to(tl.float32)
            do = do.to(tl.float32)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        if MASK:  # the causal diagonal (keys past the end only reach dK/dV rows that are never stored)
            s = tl.where(offs_n[None, :] <= offs_m[:, None], s, float("-inf"))
        dk, dv = dkdv_step(dk, dv, q, do, k, v, s, lse, delta, seed, bh, offs_m, offs_n, L, dropout_p, DROPOUT,
                           DOT_PRECISION)
    return dk, dv


@triton.jit
def _varlen_bwd_dkdv_kernel(Q, K, V, DO, DK, DV, LSE, DELTA, CU, SEED, sm_scale, qk_scale, dropout_p,
                            stride_qn, stride_qh, stride_kn, stride_kh, stride_vn, stride_vh, stride_dn, stride_dh,
                            stride_dkn, stride_dkh, stride_dvn, stride_dvh, n_tokens, H,
                            HEAD_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                            CAUSAL: tl.constexpr, DROPOUT: tl.constexpr, UPCAST: tl.constexpr,
                            DOT_PRECISION: tl.constexpr):
    start_n = tl.program_id(0) * BLOCK_N
    h = tl.program_id(1)
    b = tl.program_id(2)
    first = tl.load(CU + b)
    L = tl.load(CU + b + 1) - first
    if start_n < L:
        offs_n = start_n + tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, HEAD_D)
        cols = (first + offs_n).to(tl.int64)
        col_ok = offs_n < L
        k = tl.load(K + cols[:, None] * stride_kn + h * stride_kh + offs_d[None, :], mask=col_ok[:, None], other=0.0)
        v = tl.load(V + cols[:, None] * stride_vn + h * stride_vh + offs_d[None, :], mask=col_ok[:, None], other=0.0)
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        seed = 0
        if DROPOUT:
            seed = tl.load(SEED)
        bh = b * H + h
        dk = tl.zeros((BLOCK_N, HEAD_D), dtype=tl.float32)
        dv = tl.zeros((BLOCK_N, HEAD_D), dtype=tl.float32)
        Q_h = Q + first.to(tl.int64) * stride_qn + h * stride_qh
        DO_h = DO + first.to(tl.int64) * stride_dn + h * stride_dh
        LSE_h = LSE + h.to(tl.int64) * n_tokens + first
        DELTA_h = DELTA + h.to(tl.int64) * n_tokens + first
        if CAUSAL:
            # query blocks [lo, mid) cross the diagonal (masked); from mid on they see every key here
            lo = start_n // BLOCK_M * BLOCK_M
            mid = tl.cdiv(start_n + BLOCK_N - 1, BLOCK_M) * BLOCK_M
            dk, dv = _dkdv_inner(dk, dv, k, v, Q_h, DO_h, LSE_h, DELTA_h, stride_qn, stride_dn, offs_n, offs_d,
                                 lo, tl.minimum(mid, L), L, qk_scale, seed, bh, dropout_p, BLOCK_M, True, DROPOUT,
                                 UPCAST, DOT_PRECISION)
        else:
            mid = 0
        dk, dv = _dkdv_inner(dk, dv, k, v, Q_h, DO_h, LSE_h, DELTA_h, stride_qn, stride_dn, offs_n, offs_d,
                             mid, L, L, qk_scale, seed, bh, dropout_p, BLOCK_M, False, DROPOUT, UPCAST,
                             DOT_PRECISION)
        dk = dk * sm_scale
        tl.store(DK + cols[:, None] * stride_dkn + h * stride_dkh + offs_d[None, :], dk.to(DK.dtype.element_ty),
                 mask=col_ok[:, None])
        tl.store(DV + cols[:, None] * stride_dvn + h * stride_dvh + offs_d[None, :], dv.to(DV.dtype.element_ty),
                 mask=col_ok[:, None])


@triton.jit
def _dq_inner(dq, q, do, lse, delta, K_h, V_h, stride_kn, stride_vn, offs_m, offs_d, lo, hi, L, qk_scale, seed, bh,
              dropout_p, BLOCK_N: tl.constexpr, MASK: tl.constexpr, CAUSAL: tl.constexpr, DROPOUT: tl.constexpr,
              UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr):
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n64 = offs_n.to(tl.int64)
        if MASK:
            kt = tl.load(K_h + n64[None, :] * stride_kn + offs_d[:, None], mask=offs_n[None, :] < L, other=0.0)
            vt = tl.load(V_h + n64[None, :] * stride_vn + offs_d[:, None], mask=offs_n[None, :] < L, other=0.0)
        else:
            kt = tl.load(K_h + n64[None, :] * stride_kn + offs_d[:, None])  # (D, BLOCK_N)
            vt = tl.load(V_h + n64[None, :] * stride_vn + offs_d[:, None])
        if UPCAST:
            kt = kt.to(tl.float32)
            vt = vt.to(tl.float32)
        s = tl.dot(q, kt, input_precision=DOT_PRECISION) * qk_scale
        if MASK:
            ok = offs_n[None, :] < L
            if CAUSAL:
                ok = ok & (offs_n[None, :] <= offs_m[:, None])
            s = tl.where(ok, s, float("-inf"))
        dq = dq_step(dq, do, kt, vt, s, lse, delta, seed, bh, offs_m, offs_n, L, dropout_p, DROPOUT, DOT_PRECISION)
    return dq


@triton.jit
def _varlen_bwd_dq_kernel(Q, K, V, DO, DQ, LSE, DELTA, CU, SEED, sm_scale, qk_scale, dropout_p,
                          stride_qn, stride_qh, stride_kn, stride_kh, stride_vn, stride_vh, stride_dn, stride_dh,
                          stride_dqn, stride_dqh, n_tokens, H,
                          HEAD_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                          CAUSAL: tl.constexpr, DROPOUT: tl.constexpr, UPCAST: tl.constexpr,
                          DOT_PRECISION: tl.constexpr):
    start_m = tl.program_id(0) * BLOCK_M
    h = tl.program_id(1)
    b = tl.program_id(2)
    first = tl.load(CU + b)
    L = tl.load(CU + b + 1) - first
    if start_m < L:
        offs_m = start_m + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_D)
        rows = (first + offs_m).to(tl.int64)
        row_ok = offs_m < L
        q = tl.load(Q + rows[:, None] * stride_qn + h * stride_qh + offs_d[None, :], mask=row_ok[:, None], other=0.0)
        do = tl.load(DO + rows[:, None] * stride_dn + h * stride_dh + offs_d[None, :], mask=row_ok[:, None],
                     other=0.0)
        lse = tl.load(LSE + h.to(tl.int64) * n_tokens + rows, mask=row_ok, other=float("inf"))
        delta = tl.load(DELTA + h.to(tl.int64) * n_tokens + rows, mask=row_ok, other=0.0)
        if UPCAST:
            q = q.to(tl.float32)
            do = do.to(tl.float32)
        seed = 0
        if DROPOUT:
            seed = tl.load(SEED)
        bh = b * H + h
        K_h = K + first.to(tl.int64) * stride_kn + h * stride_kh
        V_h = V + first.to(tl.int64) * stride_vn + h * stride_vh
        dq = tl.zeros((BLOCK_M, HEAD_D), dtype=tl.float32)
        mid, hi = _key_split(start_m, L, BLOCK_M, BLOCK_N, CAUSAL)
        dq = _dq_inner(dq, q, do, lse, delta, K_h, V_h, stride_kn, stride_vn, offs_m, offs_d, 0, mid, L, qk_scale,
                       seed, bh, dropout_p, BLOCK_N, False, CAUSAL, DROPOUT, UPCAST, DOT_PRECISION)
        dq = _dq_inner(dq, q, do, lse, delta, K_h, V_h, stride_kn, stride_vn, offs_m, offs_d, mid, hi, L, qk_scale,
                       seed, bh, dropout_p, BLOCK_N, True, CAUSAL, DROPOUT, UPCAST, DOT_PRECISION)
        dq = dq * sm_scale
        tl.store(DQ + rows[:, None] * stride_dqn + h * stride_dqh + offs_d[None, :], dq.to(DQ.dtype.element_ty),
                 mask=row_ok[:, None])


@triton.jit
def _varlen_keep_kernel(KEEP, CU, SEED, H, max_seqlen, dropout_p, BLOCK: tl.constexpr):
    """KEEP (B, H, max_seqlen, max_seqlen) int8: the dropout mask of sequence b, head h (0 past its end)."""
    bh = tl.program_id(2)
    b = bh // H
    L = tl.load(CU + b + 1) - tl.load(CU + b)
    offs_m = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    offs_n = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    keep = dropout_keep(tl.load(SEED), bh, offs_m, offs_n, L, dropout_p)
    keep = keep & (offs_m[:, None] < L) & (offs_n[None, :] < L)
    tl.store(KEEP + bh.to(tl.int64) * max_seqlen * max_seqlen + offs_m[:, None] * max_seqlen + offs_n[None, :],
             keep.to(tl.int8), mask=(offs_m[:, None] < max_seqlen) & (offs_n[None, :] < max_seqlen))


# ---- tiles ---------------------------------------------------------------------------------------
# GPU: a few FlashAttention-2 tile shapes, chosen per (head dim, causal, dropout, dtype) by Triton's
# autotuner on first use (the GPU measurement, `uer-ds bench kernels`, records which wins); not yet
# tuned on a GPU.  `python -m uer_ds.kernels.compile_check` compiles every one for sm_90 without a GPU.
# Interpreter: one small pair of unequal tiles, so the tests' short sequences (17, 130) cross several
# blocks, leave ragged tails, and take the causal split with BLOCK_M != BLOCK_N.
FWD_CONFIGS = ((128, 64, 4, 3), (128, 128, 8, 3), (64, 64, 4, 3))  # (BLOCK_M, BLOCK_N, warps, stages)
DKDV_CONFIGS = ((64, 64, 4, 2), (32, 128, 4, 3))
DQ_CONFIGS = ((64, 64, 4, 2), (128, 32, 4, 3))
INTERPRET_BLOCKS = (32, 16)  # (BLOCK_M, BLOCK_N) for every kernel
AUTOTUNE_KEY = ["HEAD_D", "CAUSAL", "DROPOUT"]  # plus the tensors' dtypes, which Triton adds


def _autotuned(kernel, configs):
    """The kernel under Triton's autotuner on a GPU; the plain (interpreted) kernel on CPU."""
    if interpreting():
        return kernel
    return triton.autotune([triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
                            for m, n, w, s in configs], key=AUTOTUNE_KEY)(kernel)


_fwd = _autotuned(_varlen_fwd_kernel, FWD_CONFIGS)
_dkdv = _autotuned(_varlen_bwd_dkdv_kernel, DKDV_CONFIGS)
_dq = _autotuned(_varlen_bwd_dq_kernel, DQ_CONFIGS)


def _grid(max_seqlen: int, heads: int, batch: int, block: str):
    """The launch grid: (blocks over max_seqlen, heads, sequences); the tile from the autotuner's choice."""
    if interpreting():
        size = INTERPRET_BLOCKS[0] if block == "BLOCK_M" else INTERPRET_BLOCKS[1]
        return (cdiv(max_seqlen, size), heads, batch)
    return lambda meta: (cdiv(max_seqlen, meta[block]), heads, batch)


def _tile_args() -> dict:
    return dict(BLOCK_M=INTERPRET_BLOCKS[0], BLOCK_N=INTERPRET_BLOCKS[1]) if interpreting() else {}


def _flags(q: torch.Tensor, causal: bool, dropout_p: float) -> dict:
    return dict(HEAD_D=q.shape[-1], CAUSAL=causal, DROPOUT=dropout_p > 0, UPCAST=q.device.type != "cuda",
                DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32")


def _heads(t: torch.Tensor) -> torch.Tensor:
    """Unit stride on the head dim (what the kernels assume); a no-op for the model's (N, H, D) views."""
    return t if t.stride(-1) == 1 else t.contiguous()


# ---- operators -----------------------------------------------------------------------------------
@kernel_op("varlen_attn_fwd")
def varlen_attn_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                    seed: Optional[torch.Tensor], max_seqlen: int, causal: bool, dropout_p: float,
                    softmax_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(output (N, H, D) in q's dtype, lse (H, N) fp32 in base-2 units of the scaled scores)."""
    q, k, v = _heads(q), _heads(k), _heads(v)
    n, h, d = q.shape
    o = torch.empty((n, h, d), dtype=q.dtype, device=q.device)
    lse = torch.empty((h, n), dtype=torch.float32, device=q.device)
    batch = cu_seqlens.shape[0] - 1
    if n and batch and max_seqlen:
        with cuda_device_guard(q.device):
            launch(_fwd, _grid(max_seqlen, h, batch, "BLOCK_M"), q, k, v, o, lse, cu_seqlens,
                   seed if seed is not None else cu_seqlens, softmax_scale * LOG2E, dropout_p,
                   q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), o.stride(0),
                   o.stride(1), n, h, **_flags(q, causal, dropout_p), **_tile_args())
    return o, lse


@kernel_op("varlen_attn_bwd")
def varlen_attn_bwd(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor,
                    lse: torch.Tensor, cu_seqlens: torch.Tensor, seed: Optional[torch.Tensor], max_seqlen: int,
                    causal: bool, dropout_p: float, softmax_scale: float
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dq, dk, dv, each (N, H, D) in q's dtype, from the forward's output and lse."""
    q, k, v, do = _heads(q), _heads(k), _heads(v), _heads(do)
    n, h, d = q.shape
    dq, dk, dv = (torch.empty((n, h, d), dtype=q.dtype, device=q.device) for _ in range(3))
    delta = torch.empty((h, n), dtype=torch.float32, device=q.device)
    batch = cu_seqlens.shape[0] - 1
    if n and batch and max_seqlen:
        flags = _flags(q, causal, dropout_p)
        seed_arg = seed if seed is not None else cu_seqlens
        strides = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), do.stride(0),
                   do.stride(1))
        with cuda_device_guard(q.device):
            block = 64 if q.device.type == "cuda" else INTERPRET_BLOCKS[0]
            launch(_varlen_bwd_preprocess_kernel, (cdiv(n, block), h), o, do, delta, o.stride(0), o.stride(1),
                   do.stride(0), do.stride(1), n, HEAD_D=d, BLOCK=block)
            launch(_dkdv, _grid(max_seqlen, h, batch, "BLOCK_N"), q, k, v, do, dk, dv, lse, delta, cu_seqlens,
                   seed_arg, softmax_scale, softmax_scale * LOG2E, dropout_p, *strides, dk.stride(0), dk.stride(1),
                   dv.stride(0), dv.stride(1), n, h, **flags, **_tile_args())
            launch(_dq, _grid(max_seqlen, h, batch, "BLOCK_M"), q, k, v, do, dq, lse, delta, cu_seqlens, seed_arg,
                   softmax_scale, softmax_scale * LOG2E, dropout_p, *strides, dq.stride(0), dq.stride(1), n, h,
                   **flags, **_tile_args())
    elif n:  # no sequence covers the tokens (an empty batch): nothing reaches them
        dq.zero_(), dk.zero_(), dv.zero_()
    return dq, dk, dv


def _setup(ctx, inputs, output) -> None:
    ctx.set_materialize_grads(False)  # the statistics' gradients are never used: no zeros to make
    q, k, v, cu_seqlens, seed, max_seqlen, causal, dropout_p, softmax_scale = inputs
    o, lse = output
    ctx.save_for_backward(q, k, v, o, lse, cu_seqlens, seed)
    ctx.settings = (max_seqlen, causal, dropout_p, softmax_scale)


def _backward_with(bwd: Callable) -> Callable:
    """The backward formula, calling `bwd` (the registered operator, or its plain launcher when eager)."""

    def backward(ctx, do, *_lse):
        q, k, v, o, lse, cu_seqlens, seed = ctx.saved_tensors
        dq, dk, dv = bwd(do, q, k, v, o, lse, cu_seqlens, seed, *ctx.settings)
        return dq, dk, dv, None, None, None, None, None, None
    return backward


varlen_attn_fwd.register_autograd(_backward_with(varlen_attn_bwd), setup_context=_setup)
_VarlenEager = eager_function(varlen_attn_fwd.launcher, _setup, _backward_with(varlen_attn_bwd.launcher))


# ---- functional and module -----------------------------------------------------------------------
def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
           dropout_p: float) -> None:
    op = "varlen_attention"
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_dtype(op, name, t)
        if t.dim() != 3:
            raise ValueError(f"{op}: {name} has shape {tuple(t.shape)}: it must be 3-d (N, H, D), the packed tokens")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"{op}: q, k, v have dtypes {q.dtype}, {k.dtype}, {v.dtype}: they must be equal")
    if not (q.shape == k.shape == v.shape):
        raise ValueError(f"{op}: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}: they must be equal")
    if q.shape[-1] not in HEAD_DIMS:
        raise ValueError(f"{op}: head dim {q.shape[-1]} is not supported: it must be one of "
                         f"{', '.join(map(str, HEAD_DIMS))}")
    if cu_seqlens.dtype != torch.int32 or cu_seqlens.dim() != 1 or cu_seqlens.numel() < 1:
        raise ValueError(f"{op}: cu_seqlens has dtype {cu_seqlens.dtype} and shape {tuple(cu_seqlens.shape)}: it "
                         "must be int32 (B + 1,), the sequence starts and the token count")
    if not isinstance(max_seqlen, int) or max_seqlen < 0 or (q.shape[0] and not max_seqlen):
        raise ValueError(f"{op}: max_seqlen is {max_seqlen!r}: it must be a Python int, the longest sequence "
                         "(computed on the host, with cu_seqlens)")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"{op}: dropout_p is {dropout_p}: it must be in [0, 1)")
    if dropout_p > 0 and max_seqlen * max_seqlen >= 2 ** 31:
        raise ValueError(f"{op}: max_seqlen^2 = {max_seqlen ** 2} with dropout: it must be < 2**31 (the dropout "
                         "stream's 32-bit counter)")
    check_launchable(op, _varlen_fwd_kernel, [q, k, v, cu_seqlens])


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                     causal: bool = False, dropout_p: float = 0.0, softmax_scale: Optional[float] = None
                     ) -> torch.Tensor:
    """Attention within each packed sequence; differentiable in q, k and v (see `varlen_flash_attention`).
    The signature of `uer_ds.kernels.reference.varlen_attention`."""
    return varlen_flash_attention(q, k, v, cu_seqlens, max_seqlen, causal, dropout_p, softmax_scale)


def varlen_flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                           max_seqlen: int, causal: bool = False, dropout_p: float = 0.0,
                           softmax_scale: Optional[float] = None, seed: Optional[torch.Tensor | int] = None
                           ) -> torch.Tensor:
    """Attention within each packed sequence; differentiable in q, k and v.

    q, k, v: (N, H, D), D in 16/32/64/128, fp32/fp16/bf16 (all three alike), the B sequences' tokens one
    after another; cu_seqlens: (B + 1,) int32 on q's device, sequence b = tokens [cu_seqlens[b],
    cu_seqlens[b + 1]), cu_seqlens[B] = N; max_seqlen: the longest sequence, a Python int (from the
    host, with cu_seqlens: the kernels never read a value back).  causal: token i sees its sequence's
    tokens <= i.  softmax_scale defaults to 1/sqrt(D).  Dropout on the probabilities (dropout_p) draws
    a Philox seed on the device per call, unless `seed` (an int or a (1,) int64 tensor) is given.
    Returns (N, H, D) in q's dtype.  The contract of `uer_ds.kernels.reference.varlen_attention`.
    ValueError for shapes, dtypes, head dims or arguments outside their range.
    """
    _check(q, k, v, cu_seqlens, max_seqlen, dropout_p)
    scale = float(softmax_scale) if softmax_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    if dropout_p > 0:
        seed = as_seed(seed, q.device) if seed is not None else dropout_seed(q.device)
    else:
        seed = None
    forward = varlen_attn_fwd if compiling() else _VarlenEager.apply
    return forward(q, k, v, cu_seqlens, seed, int(max_seqlen), bool(causal), float(dropout_p), scale)[0]


def dropout_keep_mask(seed: torch.Tensor | int, cu_seqlens: torch.Tensor, heads: int, max_seqlen: int,
                      dropout_p: float) -> torch.Tensor:
    """(B, H, max_seqlen, max_seqlen) bool: the probabilities varlen_attention(..., seed=seed) keeps in
    sequence b, head h (False past the sequence's end); on cu_seqlens' device (tests)."""
    b = cu_seqlens.numel() - 1
    keep = torch.empty((b, heads, max_seqlen, max_seqlen), dtype=torch.int8, device=cu_seqlens.device)
    check_launchable("dropout_keep_mask", _varlen_keep_kernel, [keep, cu_seqlens])
    if keep.numel():
        with cuda_device_guard(keep.device):
            _varlen_keep_kernel[(cdiv(max_seqlen, 32), cdiv(max_seqlen, 32), b * heads)](
                keep, cu_seqlens, as_seed(seed, keep.device), heads, max_seqlen, float(dropout_p), BLOCK=32)
    return keep.bool()


class VarlenFlashAttention(nn.Module):
    """The varlen attention core as a module (no parameters): dropout applies in training mode only."""

    def __init__(self, causal: bool = False, dropout_p: float = 0.0, softmax_scale: Optional[float] = None) -> None:
        super().__init__()
        self.causal, self.dropout_p, self.softmax_scale = causal, dropout_p, softmax_scale

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                max_seqlen: int) -> torch.Tensor:
        return varlen_attention(q, k, v, cu_seqlens, max_seqlen, self.causal,
                                self.dropout_p if self.training else 0.0, self.softmax_scale)

    def extra_repr(self) -> str:
        return f"causal={self.causal}, dropout_p={self.dropout_p}, softmax_scale={self.softmax_scale}"
