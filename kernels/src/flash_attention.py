"""FlashAttention-2-style attention in Triton: softmax(q k^T * scale + mask) v, forward and backward.

Layers (as Liger-Kernel): jit kernels `_attn_fwd_kernel`, `_attn_bwd_preprocess_kernel`,
`_attn_bwd_dkdv_kernel`, `_attn_bwd_dq_kernel` -> operators `uer_ds::attn_fwd` / `uer_ds::attn_bwd`
(`kernel_op`: torch.library.triton_op on a GPU, so torch.compile traces into the kernels) with autograd
registered on the forward -> `FlashAttention` (nn.Module, no parameters) -> `attention` (functional,
the signature of `uer_ds.kernels.reference.attention`).  The model's unpadded path uses the varlen
kernels instead (kernels/src/varlen_flash_attention.py); this one serves padded batches.

Algorithm (Dao, FlashAttention-2, 2023): the forward walks the key blocks of one query block with an
online softmax (running max m, running sum l, rescaled accumulator) and saves only the row
log-sum-exp (fp32, base 2).  The backward recomputes P = exp2(S - lse) block by block: one kernel
per key block accumulates dK, dV over the query blocks, one per query block accumulates dQ over the
key blocks, so no atomics are needed and results are deterministic.  delta = rowsum(dO * O) comes
from a small preprocessing kernel.  The per-tile arithmetic (online-softmax step, epilogue, dK/dV
and dQ steps, dropout mask) is shared with the varlen kernels: kernels/src/attention_tile.py.

Masks.  key_padding_mask (B, Tk), True at padding: each program loops only over the key blocks between
the batch row's first and last real key (two (B,) tensors computed on the device once per forward,
without a sync, and reused by the backward), so trailing (BERT) or leading padding costs nothing; padding inside that range is
masked element-wise.  Causal aligns the last query with the last key (key j is visible to query i
when j <= i + Tk - Tq); key blocks wholly visible to a query block skip the element-wise mask.  A row
with no visible key gets output 0 and lse = +inf, so its probabilities and gradients are exactly 0
(the reference's contract: zeros, not NaN).

Dropout: keep(i, j) = rand(seed + b * H + h, i * Tk + j) >= p (Triton's Philox), seed a (1,) int64
device tensor drawn per call (graph-safe, never read by the host), the same expression in the forward and both backward kernels, so the backward sees the forward's mask without
storing it; `dropout_keep_mask` materialises it for tests.  Kept probabilities are scaled by 1/(1-p).

Interpreter (TRITON_INTERPRET=1, CPU): bf16 `tl.dot` is wrong there (it multiplies raw bits), so the
launcher sets UPCAST and the kernels feed fp32 operands to every dot; on GPU the dots take the input
dtype (bf16/fp16 tensor cores, fp32 accumulation; fp32 inputs use IEEE fp32, not TF32).
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
                                  dropout_seed, eager_function, kernel_op, launch, next_power_of_2)

HEAD_DIMS = (16, 32, 64, 128)  # powers of two that tl.dot tiles take (>= 16); the issue asks 32/64/128
LOG2E = 1.4426950408889634


# ---- jit kernels ---------------------------------------------------------------------------------
@triton.jit
def _visible(offs_m, offs_n, KPM_row, Tq, Tk, HAS_KPM: tl.constexpr, MASK_CAUSAL: tl.constexpr,
             EVEN_N: tl.constexpr):
    """(BLOCK_M, BLOCK_N) bool: key in range, not padding, and (on diagonal blocks) not in the future."""
    ok = offs_m[:, None] >= 0  # all True, with the block's shape
    if not EVEN_N:
        ok = ok & (offs_n[None, :] < Tk)
    if HAS_KPM:
        pad = tl.load(KPM_row + offs_n, mask=offs_n < Tk, other=1)
        ok = ok & (pad == 0)[None, :]
    if MASK_CAUSAL:
        ok = ok & (offs_n[None, :] <= offs_m[:, None] + (Tk - Tq))
    return ok


@triton.jit
def _attn_fwd_inner(acc, l_i, m_i, q, K_bh, V_bh, KPM_row, stride_kt, stride_vt, offs_m, offs_d,
                    lo, hi, qk_scale, seed, bh, dropout_p, Tq, Tk,
                    BLOCK_N: tl.constexpr, HAS_KPM: tl.constexpr, MASK_CAUSAL: tl.constexpr,
                    DROPOUT: tl.constexpr, EVEN_N: tl.constexpr, UPCAST: tl.constexpr,
                    DOT_PRECISION: tl.constexpr):
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        if EVEN_N:
            k = tl.load(K_bh + offs_n[None, :] * stride_kt + offs_d[:, None])  # (D, BLOCK_N)
            v = tl.load(V_bh + offs_n[:, None] * stride_vt + offs_d[None, :])  # (BLOCK_N, D)
        else:
            k = tl.load(K_bh + offs_n[None, :] * stride_kt + offs_d[:, None], mask=offs_n[None, :] < Tk, other=0.0)
            v = tl.load(V_bh + offs_n[:, None] * stride_vt + offs_d[None, :], mask=offs_n[:, None] < Tk, other=0.0)
        if UPCAST:
            k = k.to(tl.float32)
            v = v.to(tl.float32)
        s = tl.dot(q, k, input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N), log2 units
        if HAS_KPM or MASK_CAUSAL or not EVEN_N:
            s = tl.where(_visible(offs_m, offs_n, KPM_row, Tq, Tk, HAS_KPM, MASK_CAUSAL, EVEN_N), s, float("-inf"))
        acc, l_i, m_i = softmax_step(acc, l_i, m_i, s, v, seed, bh, offs_m, offs_n, Tk, dropout_p, DROPOUT,
                                     DOT_PRECISION)
    return acc, l_i, m_i


@triton.jit
def _key_range(KV_LO, KV_HI, b, start_m, Tq, Tk, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
               HAS_KPM: tl.constexpr, CAUSAL: tl.constexpr):
    """Key-block bounds for the query block at start_m: [lo, mid) needs no causal mask, [mid, hi) does."""
    lo = 0
    hi = Tk
    if HAS_KPM:
        lo = tl.load(KV_LO + b)
        hi = tl.load(KV_HI + b)
    lo = lo // BLOCK_N * BLOCK_N
    mid = hi
    if CAUSAL:
        hi = tl.minimum(hi, start_m + BLOCK_M + (Tk - Tq))  # past the block's last query: never visible
        # key blocks ending at or before key start_m + Tk - Tq are visible to every query of the block
        full = tl.maximum(start_m + (Tk - Tq) + 1, 0) // BLOCK_N * BLOCK_N
        mid = tl.maximum(tl.minimum(full, hi), lo)
    return lo, mid, hi


@triton.jit
def _attn_fwd_kernel(Q, K, V, O, LSE, KPM, KV_LO, KV_HI, qk_scale, SEED, dropout_p,
                     stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kt,
                     stride_vb, stride_vh, stride_vt, stride_ob, stride_oh, stride_ot, stride_mb,
                     H, Tq, Tk,
                     HEAD_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     HAS_KPM: tl.constexpr, CAUSAL: tl.constexpr, DROPOUT: tl.constexpr,
                     EVEN_M: tl.constexpr, EVEN_N: tl.constexpr, UPCAST: tl.constexpr,
                     DOT_PRECISION: tl.constexpr):
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    seed = 0
    if DROPOUT:
        seed = tl.load(SEED)
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_D)
    q_ptrs = Q + b.to(tl.int64) * stride_qb + h * stride_qh + offs_m[:, None] * stride_qt + offs_d[None, :]
    if EVEN_M:
        q = tl.load(q_ptrs)
    else:
        q = tl.load(q_ptrs, mask=offs_m[:, None] < Tq, other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
    K_bh = K + b.to(tl.int64) * stride_kb + h * stride_kh
    V_bh = V + b.to(tl.int64) * stride_vb + h * stride_vh
    KPM_row = KPM + b.to(tl.int64) * stride_mb
    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, HEAD_D), dtype=tl.float32)
    lo, mid, hi = _key_range(KV_LO, KV_HI, b, start_m, Tq, Tk, BLOCK_M, BLOCK_N, HAS_KPM, CAUSAL)
    acc, l_i, m_i = _attn_fwd_inner(acc, l_i, m_i, q, K_bh, V_bh, KPM_row, stride_kt, stride_vt, offs_m, offs_d,
                                    lo, mid, qk_scale, seed, bh, dropout_p, Tq, Tk, BLOCK_N, HAS_KPM, False,
                                    DROPOUT, EVEN_N, UPCAST, DOT_PRECISION)
    if CAUSAL:
        acc, l_i, m_i = _attn_fwd_inner(acc, l_i, m_i, q, K_bh, V_bh, KPM_row, stride_kt, stride_vt, offs_m,
                                        offs_d, mid, hi, qk_scale, seed, bh, dropout_p, Tq, Tk, BLOCK_N, HAS_KPM,
                                        True, DROPOUT, EVEN_N, UPCAST, DOT_PRECISION)
    o, lse = softmax_finish(acc, l_i, m_i, dropout_p, DROPOUT)  # nothing visible: o 0, lse +inf
    o_ptrs = O + b.to(tl.int64) * stride_ob + h * stride_oh + offs_m[:, None] * stride_ot + offs_d[None, :]
    if EVEN_M:
        tl.store(o_ptrs, o.to(O.dtype.element_ty))
        tl.store(LSE + bh.to(tl.int64) * Tq + offs_m, lse)
    else:
        tl.store(o_ptrs, o.to(O.dtype.element_ty), mask=offs_m[:, None] < Tq)
        tl.store(LSE + bh.to(tl.int64) * Tq + offs_m, lse, mask=offs_m < Tq)


@triton.jit
def _attn_bwd_preprocess_kernel(O, DO, DELTA, stride_ob, stride_oh, stride_ot, stride_db, stride_dh, stride_dt,
                                H, Tq, HEAD_D: tl.constexpr, BLOCK_M: tl.constexpr):
    """delta = rowsum(dO * O), fp32 (B*H, Tq)."""
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_D)
    rows = offs_m[:, None] < Tq
    o = tl.load(O + b.to(tl.int64) * stride_ob + h * stride_oh + offs_m[:, None] * stride_ot + offs_d[None, :],
                mask=rows, other=0.0).to(tl.float32)
    do = tl.load(DO + b.to(tl.int64) * stride_db + h * stride_dh + offs_m[:, None] * stride_dt + offs_d[None, :],
                 mask=rows, other=0.0).to(tl.float32)
    tl.store(DELTA + bh.to(tl.int64) * Tq + offs_m, tl.sum(o * do, 1), mask=offs_m < Tq)


@triton.jit
def _attn_bwd_dkdv_inner(dk, dv, k, v, Q_bh, DO_bh, LSE_bh, DELTA_bh, KPM_row, stride_qt, stride_dot,
                         offs_n, offs_d, lo, hi, qk_scale, seed, bh, dropout_p, Tq, Tk,
                         BLOCK_M: tl.constexpr, HAS_KPM: tl.constexpr, MASK_CAUSAL: tl.constexpr,
                         DROPOUT: tl.constexpr, EVEN_M: tl.constexpr, EVEN_N: tl.constexpr,
                         UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr):
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        if EVEN_M:
            q = tl.load(Q_bh + offs_m[:, None] * stride_qt + offs_d[None, :])
            do = tl.load(DO_bh + offs_m[:, None] * stride_dot + offs_d[None, :])
            lse = tl.load(LSE_bh + offs_m)
            delta = tl.load(DELTA_bh + offs_m)
        else:
            rows = offs_m[:, None] < Tq
            q = tl.load(Q_bh + offs_m[:, None] * stride_qt + offs_d[None, :], mask=rows, other=0.0)
            do = tl.load(DO_bh + offs_m[:, None] * stride_dot + offs_d[None, :], mask=rows, other=0.0)
            lse = tl.load(LSE_bh + offs_m, mask=offs_m < Tq, other=float("inf"))
            delta = tl.load(DELTA_bh + offs_m, mask=offs_m < Tq, other=0.0)
        if UPCAST:
            q = q.to(tl.float32)
            do = do.to(tl.float32)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        if HAS_KPM or MASK_CAUSAL or not EVEN_N:
            s = tl.where(_visible(offs_m, offs_n, KPM_row, Tq, Tk, HAS_KPM, MASK_CAUSAL, EVEN_N), s, float("-inf"))
        dk, dv = dkdv_step(dk, dv, q, do, k, v, s, lse, delta, seed, bh, offs_m, offs_n, Tk, dropout_p, DROPOUT,
                           DOT_PRECISION)
    return dk, dv


@triton.jit
def _attn_bwd_dkdv_kernel(Q, K, V, DO, DK, DV, LSE, DELTA, KPM, KV_LO, KV_HI, sm_scale, qk_scale, SEED, dropout_p,
                          stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kt,
                          stride_vb, stride_vh, stride_vt, stride_dob, stride_doh, stride_dot,
                          stride_dkb, stride_dkh, stride_dkt, stride_dvb, stride_dvh, stride_dvt, stride_mb,
                          H, Tq, Tk,
                          HEAD_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                          HAS_KPM: tl.constexpr, CAUSAL: tl.constexpr, DROPOUT: tl.constexpr,
                          EVEN_M: tl.constexpr, EVEN_N: tl.constexpr, UPCAST: tl.constexpr,
                          DOT_PRECISION: tl.constexpr):
    start_n = tl.program_id(0) * BLOCK_N
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    seed = 0
    if DROPOUT:
        seed = tl.load(SEED)
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_D)
    k_ptrs = K + b.to(tl.int64) * stride_kb + h * stride_kh + offs_n[:, None] * stride_kt + offs_d[None, :]
    v_ptrs = V + b.to(tl.int64) * stride_vb + h * stride_vh + offs_n[:, None] * stride_vt + offs_d[None, :]
    if EVEN_N:
        k = tl.load(k_ptrs)
        v = tl.load(v_ptrs)
    else:
        k = tl.load(k_ptrs, mask=offs_n[:, None] < Tk, other=0.0)
        v = tl.load(v_ptrs, mask=offs_n[:, None] < Tk, other=0.0)
    if UPCAST:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    dk = tl.zeros((BLOCK_N, HEAD_D), dtype=tl.float32)
    dv = tl.zeros((BLOCK_N, HEAD_D), dtype=tl.float32)
    Q_bh = Q + b.to(tl.int64) * stride_qb + h * stride_qh
    DO_bh = DO + b.to(tl.int64) * stride_dob + h * stride_doh
    LSE_bh = LSE + bh.to(tl.int64) * Tq
    DELTA_bh = DELTA + bh.to(tl.int64) * Tq
    KPM_row = KPM + b.to(tl.int64) * stride_mb
    # query blocks [lo, mid) hold the diagonal (causal mask needed), [mid, hi) see the whole key block
    lo = 0
    hi = Tq
    if CAUSAL:
        lo = tl.maximum(start_n - (Tk - Tq), 0) // BLOCK_M * BLOCK_M  # first query that sees a key here
        lo = tl.minimum(lo, hi)
    mid = lo
    if CAUSAL:
        last = start_n + BLOCK_N - 1 - (Tk - Tq)  # queries >= last see every key of the block
        mid = tl.minimum(tl.maximum(tl.maximum(last, 0) + BLOCK_M - 1, lo) // BLOCK_M * BLOCK_M, hi)
        mid = tl.maximum(mid, lo)
    if HAS_KPM:  # a key block that is all padding has dK = dV = 0: visit no query block
        kv_lo = tl.load(KV_LO + b)
        kv_hi = tl.load(KV_HI + b)
        padding_only = (start_n + BLOCK_N <= kv_lo) | (start_n >= kv_hi)
        hi = tl.where(padding_only, lo, hi)
        mid = tl.where(padding_only, lo, mid)
    if CAUSAL:
        dk, dv = _attn_bwd_dkdv_inner(dk, dv, k, v, Q_bh, DO_bh, LSE_bh, DELTA_bh, KPM_row, stride_qt, stride_dot,
                                      offs_n, offs_d, lo, mid, qk_scale, seed, bh, dropout_p, Tq, Tk, BLOCK_M,
                                      HAS_KPM, True, DROPOUT, EVEN_M, EVEN_N, UPCAST, DOT_PRECISION)
    dk, dv = _attn_bwd_dkdv_inner(dk, dv, k, v, Q_bh, DO_bh, LSE_bh, DELTA_bh, KPM_row, stride_qt, stride_dot,
                                  offs_n, offs_d, mid, hi, qk_scale, seed, bh, dropout_p, Tq, Tk, BLOCK_M,
                                  HAS_KPM, False, DROPOUT, EVEN_M, EVEN_N, UPCAST, DOT_PRECISION)
    dk = dk * sm_scale
    dk_ptrs = DK + b.to(tl.int64) * stride_dkb + h * stride_dkh + offs_n[:, None] * stride_dkt + offs_d[None, :]
    dv_ptrs = DV + b.to(tl.int64) * stride_dvb + h * stride_dvh + offs_n[:, None] * stride_dvt + offs_d[None, :]
    if EVEN_N:
        tl.store(dk_ptrs, dk.to(DK.dtype.element_ty))
        tl.store(dv_ptrs, dv.to(DV.dtype.element_ty))
    else:
        tl.store(dk_ptrs, dk.to(DK.dtype.element_ty), mask=offs_n[:, None] < Tk)
        tl.store(dv_ptrs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < Tk)


@triton.jit
def _attn_bwd_dq_inner(dq, q, do, lse, delta, K_bh, V_bh, KPM_row, stride_kt, stride_vt, offs_m, offs_d,
                       lo, hi, qk_scale, seed, bh, dropout_p, Tq, Tk,
                       BLOCK_N: tl.constexpr, HAS_KPM: tl.constexpr, MASK_CAUSAL: tl.constexpr,
                       DROPOUT: tl.constexpr, EVEN_N: tl.constexpr, UPCAST: tl.constexpr,
                       DOT_PRECISION: tl.constexpr):
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        if EVEN_N:
            kt = tl.load(K_bh + offs_n[None, :] * stride_kt + offs_d[:, None])  # (D, BLOCK_N)
            vt = tl.load(V_bh + offs_n[None, :] * stride_vt + offs_d[:, None])
        else:
            kt = tl.load(K_bh + offs_n[None, :] * stride_kt + offs_d[:, None], mask=offs_n[None, :] < Tk, other=0.0)
            vt = tl.load(V_bh + offs_n[None, :] * stride_vt + offs_d[:, None], mask=offs_n[None, :] < Tk, other=0.0)
        if UPCAST:
            kt = kt.to(tl.float32)
            vt = vt.to(tl.float32)
        s = tl.dot(q, kt, input_precision=DOT_PRECISION) * qk_scale
        if HAS_KPM or MASK_CAUSAL or not EVEN_N:
            s = tl.where(_visible(offs_m, offs_n, KPM_row, Tq, Tk, HAS_KPM, MASK_CAUSAL, EVEN_N), s, float("-inf"))
        dq = dq_step(dq, do, kt, vt, s, lse, delta, seed, bh, offs_m, offs_n, Tk, dropout_p, DROPOUT, DOT_PRECISION)
    return dq


@triton.jit
def _attn_bwd_dq_kernel(Q, K, V, DO, DQ, LSE, DELTA, KPM, KV_LO, KV_HI, sm_scale, qk_scale, SEED, dropout_p,
                        stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kt,
                        stride_vb, stride_vh, stride_vt, stride_dob, stride_doh, stride_dot,
                        stride_dqb, stride_dqh, stride_dqt, stride_mb,
                        H, Tq, Tk,
                        HEAD_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                        HAS_KPM: tl.constexpr, CAUSAL: tl.constexpr, DROPOUT: tl.constexpr,
                        EVEN_M: tl.constexpr, EVEN_N: tl.constexpr, UPCAST: tl.constexpr,
                        DOT_PRECISION: tl.constexpr):
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    seed = 0
    if DROPOUT:
        seed = tl.load(SEED)
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_D)
    q_ptrs = Q + b.to(tl.int64) * stride_qb + h * stride_qh + offs_m[:, None] * stride_qt + offs_d[None, :]
    do_ptrs = DO + b.to(tl.int64) * stride_dob + h * stride_doh + offs_m[:, None] * stride_dot + offs_d[None, :]
    if EVEN_M:
        q = tl.load(q_ptrs)
        do = tl.load(do_ptrs)
        lse = tl.load(LSE + bh.to(tl.int64) * Tq + offs_m)
        delta = tl.load(DELTA + bh.to(tl.int64) * Tq + offs_m)
    else:
        q = tl.load(q_ptrs, mask=offs_m[:, None] < Tq, other=0.0)
        do = tl.load(do_ptrs, mask=offs_m[:, None] < Tq, other=0.0)
        lse = tl.load(LSE + bh.to(tl.int64) * Tq + offs_m, mask=offs_m < Tq, other=float("inf"))
        delta = tl.load(DELTA + bh.to(tl.int64) * Tq + offs_m, mask=offs_m < Tq, other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
        do = do.to(tl.float32)
    K_bh = K + b.to(tl.int64) * stride_kb + h * stride_kh
    V_bh = V + b.to(tl.int64) * stride_vb + h * stride_vh
    KPM_row = KPM + b.to(tl.int64) * stride_mb
    dq = tl.zeros((BLOCK_M, HEAD_D), dtype=tl.float32)
    lo, mid, hi = _key_range(KV_LO, KV_HI, b, start_m, Tq, Tk, BLOCK_M, BLOCK_N, HAS_KPM, CAUSAL)
    dq = _attn_bwd_dq_inner(dq, q, do, lse, delta, K_bh, V_bh, KPM_row, stride_kt, stride_vt, offs_m, offs_d,
                            lo, mid, qk_scale, seed, bh, dropout_p, Tq, Tk, BLOCK_N, HAS_KPM, False, DROPOUT,
                            EVEN_N, UPCAST, DOT_PRECISION)
    if CAUSAL:
        dq = _attn_bwd_dq_inner(dq, q, do, lse, delta, K_bh, V_bh, KPM_row, stride_kt, stride_vt, offs_m, offs_d,
                                mid, hi, qk_scale, seed, bh, dropout_p, Tq, Tk, BLOCK_N, HAS_KPM, True, DROPOUT,
                                EVEN_N, UPCAST, DOT_PRECISION)
    dq = dq * sm_scale
    dq_ptrs = DQ + b.to(tl.int64) * stride_dqb + h * stride_dqh + offs_m[:, None] * stride_dqt + offs_d[None, :]
    if EVEN_M:
        tl.store(dq_ptrs, dq.to(DQ.dtype.element_ty))
    else:
        tl.store(dq_ptrs, dq.to(DQ.dtype.element_ty), mask=offs_m[:, None] < Tq)


@triton.jit
def _dropout_keep_kernel(KEEP, SEED, dropout_p, Tq, Tk, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """KEEP (B*H, Tq, Tk) int8: the dropout mask the attention kernels use for this seed."""
    bh = tl.program_id(2)
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    keep = dropout_keep(tl.load(SEED), bh, offs_m, offs_n, Tk, dropout_p)
    tl.store(KEEP + bh.to(tl.int64) * Tq * Tk + offs_m[:, None] * Tk + offs_n[None, :], keep.to(tl.int8),
             mask=(offs_m[:, None] < Tq) & (offs_n[None, :] < Tk))


@triton.jit
def _key_range_kernel(KPM, LO, HI, stride_mb, Tk, BLOCK: tl.constexpr):
    """Row b of the padding mask (int8 view of bool, 1 = padding) -> LO[b], HI[b]: its first real key and
    one past its last (an all-padding row gets LO = Tk, HI = 0: the kernels visit no key block for it)."""
    b = tl.program_id(0)
    lo = tl.full((BLOCK,), Tk, dtype=tl.int32)
    hi = tl.zeros((BLOCK,), dtype=tl.int32)
    for start in range(0, Tk, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        pad = tl.load(KPM + b.to(tl.int64) * stride_mb + offs, mask=offs < Tk, other=1)
        real = pad == 0
        lo = tl.minimum(lo, tl.where(real, offs, Tk))
        hi = tl.maximum(hi, tl.where(real, offs + 1, 0))
    tl.store(LO + b, tl.min(lo, 0))
    tl.store(HI + b, tl.max(hi, 0))


# ---- launchers -----------------------------------------------------------------------------------
# Block sizes.  GPU: FlashAttention-2's usual tiles (128 queries x 64 keys in the forward, 64 x 64 in
# the backward, which holds five tiles at once); fp32 (a test dtype, not a speed target) takes
# smaller tiles.  Not yet tuned on a GPU (see `uer-ds bench kernels`).  `python -m
# uer_ds.kernels.compile_check` compiles every variant for sm_90 without a GPU: shared memory at most
# 64 KB for 16-bit inputs, 68 KB for fp32.
# Interpreter: small, unequal tiles, so that the tests' short sequences (17, 130) cross several
# blocks, leave ragged tails, and exercise the causal split with BLOCK_M != BLOCK_N.
_GPU_FWD = {16: (128, 64, 4, 3), 32: (128, 64, 4, 3), 64: (128, 64, 4, 3), 128: (128, 64, 8, 3)}
_GPU_BWD = {16: (64, 64, 4, 2), 32: (64, 64, 4, 2), 64: (64, 64, 4, 2), 128: (64, 64, 8, 2)}
_INTERPRET_BLOCKS = (32, 16)  # (BLOCK_M, BLOCK_N)


def _gpu_tiles(d: int, fp32: bool, backward: bool) -> tuple[int, int, dict]:
    block_m, block_n, warps, stages = (_GPU_BWD if backward else _GPU_FWD)[d]
    if fp32:
        block_m, block_n, stages = (32, 32, 2) if d == 128 else (64, 32, 2)
    return block_m, block_n, {"num_warps": warps, "num_stages": stages}


def _tiles(d: int, q: torch.Tensor, backward: bool) -> tuple[int, int, dict]:
    """(BLOCK_M, BLOCK_N, launch options) for head dim d and q's device and dtype."""
    if q.device.type != "cuda":
        return _INTERPRET_BLOCKS[0], _INTERPRET_BLOCKS[1], {}
    return _gpu_tiles(d, q.dtype == torch.float32, backward)


def _heads(t: torch.Tensor) -> torch.Tensor:
    """Unit stride on the head dim (what the kernels assume); a no-op for the usual (B, T, H, D) views."""
    return t if t.stride(-1) == 1 else t.contiguous()


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: Optional[torch.Tensor],
           dropout_p: float) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_dtype("attention", name, t)
        if t.dim() != 4:
            raise ValueError(f"attention: {name} has shape {tuple(t.shape)}: it must be 4-d (B, H, T, D)")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"attention: q, k, v have dtypes {q.dtype}, {k.dtype}, {v.dtype}: they must be equal")
    b, h, _, d = q.shape
    if k.shape[:2] != (b, h) or v.shape != k.shape or k.shape[3] != d:
        raise ValueError(f"attention: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}: k and v must be "
                         "(B, H, Tk, D) with q's B, H and D")
    if d not in HEAD_DIMS:
        raise ValueError(f"attention: head dim {d} is not supported: it must be one of "
                         f"{', '.join(map(str, HEAD_DIMS))}")
    if key_padding_mask is not None and tuple(key_padding_mask.shape) != (b, k.shape[2]):
        raise ValueError(f"attention: key_padding_mask has shape {tuple(key_padding_mask.shape)}: it must be "
                         f"(B, Tk) = ({b}, {k.shape[2]})")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"attention: dropout_p is {dropout_p}: it must be in [0, 1)")
    if dropout_p > 0 and q.shape[2] * k.shape[2] >= 2 ** 31:
        raise ValueError(f"attention: Tq * Tk = {q.shape[2] * k.shape[2]} with dropout: it must be < 2**31 "
                         "(the dropout stream's 32-bit counter)")


def _mask_bytes(key_padding_mask: torch.Tensor) -> torch.Tensor:
    """The (B, Tk) padding mask as the int8 the kernels read (1 = padding): a view of a bool mask (no op)."""
    pad = key_padding_mask.view(torch.int8) if key_padding_mask.dtype == torch.bool \
        else key_padding_mask.ne(0).view(torch.int8)
    return pad if pad.stride(-1) == 1 else pad.contiguous()


def _key_ranges(pad: torch.Tensor, tk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's [first, last + 1) real key, two int32 (B,) tensors, by one small kernel on the device
    (no host read); once per forward (the backward reuses them)."""
    b = pad.shape[0]
    lo, hi = (torch.empty(b, dtype=torch.int32, device=pad.device) for _ in range(2))
    if b:
        launch(_key_range_kernel, (b,), pad, lo, hi, pad.stride(0), tk,
               BLOCK=min(next_power_of_2(max(tk, 1)), 1024 if pad.device.type == "cuda" else 64))
    return lo, hi


def _flags(q: torch.Tensor, tq: int, tk: int, block_m: int, block_n: int, has_kpm: bool, causal: bool,
           dropout_p: float) -> dict:
    return dict(HAS_KPM=has_kpm, CAUSAL=causal, DROPOUT=dropout_p > 0, EVEN_M=tq % block_m == 0,
                EVEN_N=tk % block_n == 0, UPCAST=q.device.type != "cuda",
                DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32")


@kernel_op("attn_fwd")
def attn_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: Optional[torch.Tensor],
             seed: Optional[torch.Tensor], causal: bool, dropout_p: float, softmax_scale: float
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(output (B, H, Tq, D) in q's dtype, stored (B, Tq, H, D) so the caller's head merge is a view;
    lse (B*H, Tq) fp32 in base-2 units of the scaled scores, +inf on rows with no visible key; and the
    padding's key ranges (`_key_ranges`; empty without a mask) for the backward)."""
    q, k, v = _heads(q), _heads(k), _heads(v)
    b, h, tq, d = q.shape
    tk = k.shape[2]
    o = torch.empty((b, tq, h, d), dtype=q.dtype, device=q.device).transpose(1, 2)  # (B, H, Tq, D) view
    lse = torch.empty((b * h, tq), dtype=torch.float32, device=q.device)
    pad = _mask_bytes(key_padding_mask) if key_padding_mask is not None else None
    if pad is not None and tk:
        lo, hi = _key_ranges(pad, tk)
    else:
        lo, hi = (torch.empty(0, dtype=torch.int32, device=q.device) for _ in range(2))
    if o.numel() == 0:
        return o, lse, lo, hi
    if tk == 0:
        o.zero_()
        lse.fill_(float("inf"))
        return o, lse, lo, hi
    block_m, block_n, options = _tiles(d, q, backward=False)
    has_kpm = pad is not None
    with cuda_device_guard(q.device):
        launch(_attn_fwd_kernel, (cdiv(tq, block_m), b * h),
               q, k, v, o, lse, pad if has_kpm else q, lo if has_kpm else q, hi if has_kpm else q,
               softmax_scale * LOG2E, seed if seed is not None else q, dropout_p,
               q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
               v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(1), o.stride(2),
               pad.stride(0) if has_kpm else 0, h, tq, tk, HEAD_D=d, BLOCK_M=block_m, BLOCK_N=block_n,
               **_flags(q, tq, tk, block_m, block_n, has_kpm, causal, dropout_p), **options)
    return o, lse, lo, hi


@kernel_op("attn_bwd")
def attn_bwd(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor,
             lse: torch.Tensor, key_padding_mask: Optional[torch.Tensor], lo: torch.Tensor, hi: torch.Tensor,
             seed: Optional[torch.Tensor], causal: bool, dropout_p: float, softmax_scale: float
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dq, dk, dv (each shaped and typed as its input) from the forward's output, lse and key ranges."""
    q, k, v, do = _heads(q), _heads(k), _heads(v), _heads(do)
    b, h, tq, d = q.shape
    tk = k.shape[2]
    dq, dk, dv = (torch.empty((b, t, h, d), dtype=q.dtype, device=q.device).transpose(1, 2) for t in (tq, tk, tk))
    if q.numel() == 0 or tk == 0:
        dq.zero_()
        dk.zero_()
        dv.zero_()
        return dq, dk, dv
    pad = _mask_bytes(key_padding_mask) if key_padding_mask is not None else None
    has_kpm = pad is not None
    block_m, block_n, options = _tiles(d, q, backward=True)
    flags = _flags(q, tq, tk, block_m, block_n, has_kpm, causal, dropout_p)
    delta = torch.empty((b * h, tq), dtype=torch.float32, device=q.device)
    strides = (q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
               v.stride(0), v.stride(1), v.stride(2), do.stride(0), do.stride(1), do.stride(2))
    masks = (pad if has_kpm else q, lo if has_kpm else q, hi if has_kpm else q)
    seed_arg = seed if seed is not None else q
    with cuda_device_guard(q.device):
        launch(_attn_bwd_preprocess_kernel, (cdiv(tq, block_m), b * h),
               o, do, delta, o.stride(0), o.stride(1), o.stride(2), do.stride(0), do.stride(1), do.stride(2),
               h, tq, HEAD_D=d, BLOCK_M=block_m)
        launch(_attn_bwd_dkdv_kernel, (cdiv(tk, block_n), b * h),
               q, k, v, do, dk, dv, lse, delta, *masks, softmax_scale, softmax_scale * LOG2E, seed_arg, dropout_p,
               *strides, dk.stride(0), dk.stride(1), dk.stride(2), dv.stride(0), dv.stride(1), dv.stride(2),
               pad.stride(0) if has_kpm else 0, h, tq, tk, HEAD_D=d, BLOCK_M=block_m, BLOCK_N=block_n,
               **flags, **options)
        launch(_attn_bwd_dq_kernel, (cdiv(tq, block_m), b * h),
               q, k, v, do, dq, lse, delta, *masks, softmax_scale, softmax_scale * LOG2E, seed_arg, dropout_p,
               *strides, dq.stride(0), dq.stride(1), dq.stride(2), pad.stride(0) if has_kpm else 0, h, tq, tk,
               HEAD_D=d, BLOCK_M=block_m, BLOCK_N=block_n, **flags, **options)
    return dq, dk, dv


def _setup(ctx, inputs, output) -> None:
    ctx.set_materialize_grads(False)  # the statistics' gradients are never used: no zeros to make
    q, k, v, key_padding_mask, seed, causal, dropout_p, softmax_scale = inputs
    o, lse, lo, hi = output
    ctx.save_for_backward(q, k, v, o, lse, key_padding_mask, lo, hi, seed)
    ctx.settings = (causal, dropout_p, softmax_scale)


def _backward_with(bwd: Callable) -> Callable:
    """The backward formula, calling `bwd` (the registered operator, or its plain launcher when eager)."""

    def backward(ctx, do, *_):
        q, k, v, o, lse, key_padding_mask, lo, hi, seed = ctx.saved_tensors
        dq, dk, dv = bwd(do, q, k, v, o, lse, key_padding_mask, lo, hi, seed, *ctx.settings)
        return dq, dk, dv, None, None, None, None, None
    return backward


attn_fwd.register_autograd(_backward_with(attn_bwd), setup_context=_setup)
_AttentionEager = eager_function(attn_fwd.launcher, _setup, _backward_with(attn_bwd.launcher))


def dropout_keep_mask(seed: torch.Tensor | int, shape: tuple[int, int, int, int], dropout_p: float,
                      device: torch.device | str = "cuda") -> torch.Tensor:
    """The (B, H, Tq, Tk) bool mask of kept probabilities that attention(..., seed=seed) uses (for tests)."""
    b, h, tq, tk = shape
    keep = torch.empty((b * h, tq, tk), dtype=torch.int8, device=device)
    check_launchable("dropout_keep_mask", _dropout_keep_kernel, [keep])
    if keep.numel():
        with cuda_device_guard(keep.device):
            _dropout_keep_kernel[(cdiv(tq, 32), cdiv(tk, 32), b * h)](
                keep, as_seed(seed, keep.device), dropout_p, tq, tk, BLOCK_M=32, BLOCK_N=32)
    return keep.view(b, h, tq, tk).bool()


# ---- functional and module -----------------------------------------------------------------------
def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: Optional[torch.Tensor] = None,
                    causal: bool = False, dropout_p: float = 0.0, softmax_scale: Optional[float] = None,
                    seed: Optional[torch.Tensor | int] = None) -> torch.Tensor:
    """`attention` with an explicit dropout seed (an int or a (1,) int64 tensor; None: drawn on the device
    from torch's generator, so torch.manual_seed makes runs repeat and no value is read back)."""
    _check(q, k, v, key_padding_mask, dropout_p)
    check_launchable("attention", _attn_fwd_kernel,
                     [q, k, v] + ([key_padding_mask] if key_padding_mask is not None else []))
    if softmax_scale is None:
        softmax_scale = 1.0 / math.sqrt(q.shape[-1])
    if dropout_p > 0:
        seed = as_seed(seed, q.device) if seed is not None else dropout_seed(q.device)
    else:
        seed = None
    forward = attn_fwd if compiling() else _AttentionEager.apply
    return forward(q, k, v, key_padding_mask, seed, bool(causal), float(dropout_p), float(softmax_scale))[0]


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: Optional[torch.Tensor] = None,
              causal: bool = False, dropout_p: float = 0.0, softmax_scale: Optional[float] = None) -> torch.Tensor:
    """softmax(q k^T * scale + mask) v with dropout on the probabilities; differentiable in q, k, v.

    q: (B, H, Tq, D); k, v: (B, H, Tk, D), D in 16/32/64/128, fp32/fp16/bf16 (all three alike);
    key_padding_mask: (B, Tk) bool, True where the key is padding; causal aligns the last query with
    the last key; softmax_scale defaults to 1/sqrt(D).  A query row with no visible key returns zeros.
    The signature and contract of `uer_ds.kernels.reference.attention`.
    """
    return flash_attention(q, k, v, key_padding_mask, causal, dropout_p, softmax_scale)


class FlashAttention(nn.Module):
    """The attention core as a module (no parameters): dropout applies in training mode only."""

    def __init__(self, causal: bool = False, dropout_p: float = 0.0, softmax_scale: Optional[float] = None) -> None:
        super().__init__()
        self.causal, self.dropout_p, self.softmax_scale = causal, dropout_p, softmax_scale

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return attention(q, k, v, key_padding_mask, self.causal, self.dropout_p if self.training else 0.0,
                         self.softmax_scale)

    def extra_repr(self) -> str:
        return f"causal={self.causal}, dropout_p={self.dropout_p}, softmax_scale={self.softmax_scale}"
