"""FlashAttention-2-style attention in Triton: softmax(q k^T * scale + mask) v, forward and backward.

Layers (as Liger-Kernel): jit kernels `_attn_fwd_kernel`, `_attn_bwd_preprocess_kernel`,
`_attn_bwd_dkdv_kernel`, `_attn_bwd_dq_kernel` -> operators `uer_ds::attn_fwd` / `uer_ds::attn_bwd`
(`kernel_op`: torch.library.triton_op on a GPU, so torch.compile traces into the kernels) with autograd
registered on the forward -> `attention` (functional, the signature of
`uer_ds.kernels.reference.attention`; `attention_with_seed` for a given dropout seed) ->
`FlashAttention` (nn.Module, no parameters); all through the package's door, `uer_ds.kernels`.  The
model's unpadded path uses the varlen kernels instead (kernels/src/varlen_flash_attention.py); this
one serves padded batches.

Algorithm (Dao, FlashAttention-2, 2023): the forward walks the key blocks of one query block with an
online softmax (running max m, running sum l, rescaled accumulator) and saves only the row
log-sum-exp (fp32, base 2).  The backward recomputes P = exp2(S - lse) block by block: one kernel
per key block accumulates dK, dV over the query blocks, one per query block accumulates dQ over the
key blocks, so no atomics are needed and results are deterministic.  delta = rowsum(dO * O) comes
from a small preprocessing kernel.  The per-tile arithmetic (online-softmax step, epilogue, dK/dV
and dQ steps, dropout mask), the tile table, the checks and the autograd wiring are shared with the
varlen kernels: kernels/src/attention_common.py.

Masks.  key_padding_mask (B, Tk), True at padding: each program loops only over the key blocks between
the batch row's first and last real key (two (B,) tensors computed on the device once per forward,
without a sync, and reused by the backward), so trailing (BERT) or leading padding costs nothing; padding inside that range is
masked element-wise.  Causal aligns the last query with the last key (key j is visible to query i
when j <= i + Tk - Tq); key blocks wholly visible to a query block skip the element-wise mask.  A row
with no visible key gets output 0 and lse = +inf, so its probabilities and gradients are exactly 0
(the reference's contract: zeros, not NaN).

Dropout: keep(i, j) = rand(seed + b * H + h, i * Tk + j) >= p (Triton's Philox), seed a (1,) int64
device tensor drawn per call (graph-safe, never read by the host), the same expression in the forward
and both backward kernels, so the backward sees the forward's mask without storing it;
`attention_keep_mask` (attention_common.py) materialises it for tests.  Kept probabilities are scaled
by 1/(1-p).

Interpreter (TRITON_INTERPRET=1, CPU): bf16 `tl.dot` is wrong there (it multiplies raw bits), so the
launcher sets UPCAST and the kernels feed fp32 operands to every dot; on GPU the dots take the input
dtype (bf16/fp16 tensor cores, fp32 accumulation; fp32 inputs use IEEE fp32, not TF32).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import triton
import triton.language as tl
from torch import nn

from uer_ds.kernels.attention_common import (LOG2E, check_dropout, check_head_dim, check_inputs, dkdv_step,
                                             dot_flags, dq_step, heads, register_autograd, softmax_finish,
                                             softmax_step, tiles)
from uer_ds.kernels.utils import (call_seed, cdiv, check_launchable, compiling, cuda_device_guard, kernel_op, launch,
                                  next_power_of_2)


# ---- jit kernels ---------------------------------------------------------------------------------
@triton.jit
def _visible(offs_m, offs_n,
             KPM_row,  # (Tk,) int8 this batch row's key padding (1 = padding); read when HAS_KPM
             Tq, Tk, HAS_KPM: tl.constexpr, MASK_CAUSAL: tl.constexpr, EVEN_N: tl.constexpr):
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
def _attn_fwd_inner(acc, l_i, m_i, q,
                    K_bh,  # (Tk, D) this (b, h)'s keys, row stride stride_kt
                    V_bh,  # (Tk, D) this (b, h)'s values, row stride stride_vt
                    KPM_row,  # (Tk,) int8 key padding of batch row b (HAS_KPM)
                    stride_kt, stride_vt, offs_m, offs_d, lo, hi, qk_scale, seed, bh, dropout_p, Tq, Tk,
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
def _key_range(KV_LO,  # (B,) int32 first real key of each batch row (HAS_KPM)
               KV_HI,  # (B,) int32 one past each row's last real key (HAS_KPM)
               b, start_m, Tq, Tk, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HAS_KPM: tl.constexpr,
               CAUSAL: tl.constexpr):
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
def _attn_fwd_kernel(Q,  # (B, H, Tq, D) queries, strided, D contiguous
                     K,  # (B, H, Tk, D) keys
                     V,  # (B, H, Tk, D) values
                     O,  # (B, H, Tq, D) out, q's dtype (stored (B, Tq, H, D) by the launcher)
                     LSE,  # (B*H, Tq) fp32 out: row log-sum-exp of the scaled scores, base 2
                     KPM,  # (B, Tk) int8 key padding, 1 = padding (HAS_KPM; else unread)
                     KV_LO,  # (B,) int32 first real key per batch row (HAS_KPM)
                     KV_HI,  # (B,) int32 one past the last real key per batch row (HAS_KPM)
                     qk_scale,
                     SEED,  # (1,) int64 Philox seed (DROPOUT; else unread)
                     dropout_p, stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kt,
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
def _attn_bwd_preprocess_kernel(O,  # (B, H, Tq, D) the forward's output
                                DO,  # (B, H, Tq, D) its gradient
                                DELTA,  # (B*H, Tq) fp32 out: rowsum(dO * O)
                                stride_ob, stride_oh, stride_ot, stride_db, stride_dh, stride_dt,
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
def _attn_bwd_dkdv_inner(dk, dv, k, v,
                         Q_bh,  # (Tq, D) this (b, h)'s queries, row stride stride_qt
                         DO_bh,  # (Tq, D) their output gradients, row stride stride_dot
                         LSE_bh,  # (Tq,) fp32 the forward's row log-sum-exp
                         DELTA_bh,  # (Tq,) fp32 rowsum(dO * O)
                         KPM_row,  # (Tk,) int8 key padding of batch row b (HAS_KPM)
                         stride_qt, stride_dot, offs_n, offs_d, lo, hi, qk_scale, seed, bh, dropout_p, Tq, Tk,
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
def _attn_bwd_dkdv_kernel(Q,  # (B, H, Tq, D) queries, walked a query block at a time
                          K,  # (B, H, Tk, D) keys: this program's key block, loaded once
                          V,  # (B, H, Tk, D) values: this program's block, loaded once
                          DO,  # (B, H, Tq, D) output gradient, walked with Q
                          DK,  # (B, H, Tk, D) out: key gradient, k's dtype
                          DV,  # (B, H, Tk, D) out: value gradient
                          LSE,  # (B*H, Tq) fp32 the forward's row log-sum-exp, walked with Q
                          DELTA,  # (B*H, Tq) fp32 rowsum(dO * O), walked with Q
                          KPM,  # (B, Tk) int8 key padding, masks this key block (HAS_KPM)
                          KV_LO,  # (B,) int32 first real key: a key block before it is skipped (HAS_KPM)
                          KV_HI,  # (B,) int32 one past the last real key: blocks from it are skipped (HAS_KPM)
                          sm_scale, qk_scale,
                          SEED,  # (1,) int64 Philox seed, the forward's (DROPOUT)
                          dropout_p, stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kt,
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
def _attn_bwd_dq_inner(dq, q, do, lse, delta,
                       K_bh,  # (Tk, D) this (b, h)'s keys, row stride stride_kt
                       V_bh,  # (Tk, D) this (b, h)'s values, row stride stride_vt
                       KPM_row,  # (Tk,) int8 key padding of batch row b (HAS_KPM)
                       stride_kt, stride_vt, offs_m, offs_d, lo, hi, qk_scale, seed, bh, dropout_p, Tq, Tk,
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
def _attn_bwd_dq_kernel(Q,  # (B, H, Tq, D) queries: this program's query block, loaded once
                        K,  # (B, H, Tk, D) keys, walked a key block at a time
                        V,  # (B, H, Tk, D) values, walked with K
                        DO,  # (B, H, Tq, D) output gradient of this query block
                        DQ,  # (B, H, Tq, D) out: query gradient, q's dtype
                        LSE,  # (B*H, Tq) fp32 row log-sum-exp of this query block
                        DELTA,  # (B*H, Tq) fp32 rowsum(dO * O) of this query block
                        KPM,  # (B, Tk) int8 key padding, masks each key block walked (HAS_KPM)
                        KV_LO,  # (B,) int32 where the walk over key blocks starts (HAS_KPM)
                        KV_HI,  # (B,) int32 where it ends (HAS_KPM)
                        sm_scale, qk_scale,
                        SEED,  # (1,) int64 the forward's Philox seed (DROPOUT)
                        dropout_p, stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kt,
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
def _key_range_kernel(KPM,  # (B, Tk) int8 key padding, 1 = padding (a view of the bool mask)
                      LO,  # (B,) int32 out: each row's first real key (Tk when none)
                      HI,  # (B,) int32 out: one past its last real key (0 when none)
                      stride_mb, Tk, BLOCK: tl.constexpr):
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
# Tiles: attention_common.tiles (one table for the padded and the varlen kernels; the policy and its
# reason are written there).


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: Optional[torch.Tensor],
           dropout_p: float) -> None:
    check_inputs("attention", q, k, v, 4, "(B, H, T, D)")
    b, h, _, d = q.shape
    if k.shape[:2] != (b, h) or v.shape != k.shape or k.shape[3] != d:
        raise ValueError(f"attention: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}: k and v must be "
                         "(B, H, Tk, D) with q's B, H and D")
    check_head_dim("attention", d)
    if key_padding_mask is not None and tuple(key_padding_mask.shape) != (b, k.shape[2]):
        raise ValueError(f"attention: key_padding_mask has shape {tuple(key_padding_mask.shape)}: it must be "
                         f"(B, Tk) = ({b}, {k.shape[2]})")
    check_dropout("attention", dropout_p, q.shape[2] * k.shape[2], "Tq * Tk")


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
                EVEN_N=tk % block_n == 0, **dot_flags(q))


@kernel_op("attn_fwd")
def attn_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: Optional[torch.Tensor],
             seed: Optional[torch.Tensor], causal: bool, dropout_p: float, softmax_scale: float
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(output (B, H, Tq, D) in q's dtype, stored (B, Tq, H, D) so the caller's head merge is a view;
    lse (B*H, Tq) fp32 in base-2 units of the scaled scores, +inf on rows with no visible key; and the
    padding's key ranges (`_key_ranges`; empty without a mask) for the backward)."""
    q, k, v = heads(q), heads(k), heads(v)
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
    block_m, block_n, options = tiles(q, backward=False)
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
    q, k, v, do = heads(q), heads(k), heads(v), heads(do)
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
    block_m, block_n, options = tiles(q, backward=True)
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


_AttentionEager = register_autograd(attn_fwd, attn_bwd)


# ---- functionals and module ----------------------------------------------------------------------
def attention_with_seed(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        key_padding_mask: Optional[torch.Tensor] = None, causal: bool = False, dropout_p: float = 0.0,
                        softmax_scale: Optional[float] = None, seed: Optional[torch.Tensor | int] = None
                        ) -> torch.Tensor:
    """`attention` with an explicit dropout seed (an int or a (1,) int64 tensor; None: drawn on the device
    from torch's generator, so torch.manual_seed makes runs repeat and no value is read back); tests
    compare its dropout with `attention_keep_mask(seed, ...)`."""
    _check(q, k, v, key_padding_mask, dropout_p)
    check_launchable("attention", _attn_fwd_kernel,
                     [q, k, v] + ([key_padding_mask] if key_padding_mask is not None else []))
    if softmax_scale is None:
        softmax_scale = 1.0 / math.sqrt(q.shape[-1])
    seed = call_seed(dropout_p, seed, q.device)
    forward = attn_fwd if compiling() else _AttentionEager.apply
    return forward(q, k, v, key_padding_mask, seed, bool(causal), float(dropout_p), float(softmax_scale))[0]


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: Optional[torch.Tensor] = None,
              causal: bool = False, dropout_p: float = 0.0, softmax_scale: Optional[float] = None) -> torch.Tensor:
    """softmax(q k^T * scale + mask) v with dropout on the probabilities; differentiable in q, k, v.

    q: (B, H, Tq, D); k, v: (B, H, Tk, D), D in 16/32/64/128, fp32/fp16/bf16 (all three alike);
    key_padding_mask: (B, Tk) bool, True where the key is padding; causal aligns the last query with
    the last key; softmax_scale defaults to 1/sqrt(D).  A query row with no visible key returns zeros.
    The signature and contract of `uer_ds.kernels.reference.attention` (the dropout seed is drawn on
    the device: `attention_with_seed` takes one).  ValueError for shapes, dtypes, head dims or a
    dropout_p outside [0, 1); RuntimeError where the kernels cannot run (see utils.check_launchable).
    """
    return attention_with_seed(q, k, v, key_padding_mask, causal, dropout_p, softmax_scale)


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
