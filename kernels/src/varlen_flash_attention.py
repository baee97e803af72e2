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
`varlen_attention` (functional, checks the inputs; `varlen_attention_with_seed` for a given dropout
seed) -> `VarlenFlashAttention` (nn.Module); all through the package's door, `uer_ds.kernels`.

Algorithm (Dao, FlashAttention-2, 2023; the varlen indexing of its `flash_attn_varlen_func`): a
program per (query block, head, sequence) reads its sequence's bounds from cu_seqlens and walks the
key blocks of that sequence only, with an online softmax (running max and sum, rescaled
accumulator), saving the row log-sum-exp (fp32, base 2).  The grid's first axis covers max_seqlen,
a host int: programs past their sequence's end do nothing.  Key blocks wholly inside the sequence
(and, causal, wholly at or before the block's first query) skip the element-wise mask.  The backward
recomputes P = exp2(S - lse): one program per key block accumulates dK, dV over the query blocks,
one per query block accumulates dQ over the key blocks (no atomics: deterministic); delta =
rowsum(dO * O) comes from a small preprocessing kernel.  Three launches, no torch op.  The per-tile
arithmetic, the tile table, the checks and the autograd wiring are shared with the padded kernels
(kernels/src/attention_common.py).

Dropout: keep(b, h, i, j) = Philox(seed + b * H + h, i * L_b + j) >= p (Triton's `tl.rand`), seed a
(1,) int64 device tensor drawn per call (graph-safe, no host read), the same expression in every
kernel, so the backward regenerates the forward's mask; a sequence's mask depends only on its own
length, and `varlen_attention_keep_mask` (attention_common.py) materialises it for tests.

Interpreter (TRITON_INTERPRET=1, CPU): bf16 `tl.dot` is wrong there (it multiplies raw bits), so the
launcher sets UPCAST and the kernels feed fp32 operands to every dot; on a GPU the dots take the
input dtype (bf16/fp16 tensor cores, fp32 accumulation; fp32 inputs use IEEE fp32, not TF32).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import triton
import triton.language as tl
from torch import nn

from uer_ds.kernels.attention_common import (LOG2E, check_dropout, check_head_dim, check_inputs, dkdv_step, dot_flags,
                                             dq_step, heads, register_autograd, softmax_finish, softmax_step, tiles)
from uer_ds.kernels.utils import call_seed, cdiv, check_launchable, compiling, cuda_device_guard, kernel_op, launch


# ---- jit kernels ---------------------------------------------------------------------------------
@triton.jit
def _fwd_inner(acc, l_i, m_i, q,
               K_h,  # (L, D) this sequence's keys for head h, row stride stride_kn
               V_h,  # (L, D) its values, row stride stride_vn
               stride_kn, stride_vn, offs_m, offs_d, lo, hi, L, qk_scale, seed, bh, dropout_p,
               BLOCK_N: tl.constexpr, MASK: tl.constexpr, CAUSAL: tl.constexpr, DROPOUT: tl.constexpr,
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
def _varlen_fwd_kernel(Q,  # (N, H, D) packed queries, D contiguous
                       K,  # (N, H, D) packed keys
                       V,  # (N, H, D) packed values
                       O,  # (N, H, D) out, q's dtype
                       LSE,  # (H, N) fp32 out: row log-sum-exp of the scaled scores, base 2
                       CU,  # (B + 1,) int32 sequence starts, CU[B] = N
                       SEED,  # (1,) int64 Philox seed (DROPOUT; else unread)
                       qk_scale, dropout_p, stride_qn, stride_qh, stride_kn, stride_kh, stride_vn, stride_vh,
                       stride_on, stride_oh,
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
def _varlen_bwd_preprocess_kernel(O,  # (N, H, D) the forward's output
                                  DO,  # (N, H, D) its gradient
                                  DELTA,  # (H, N) fp32 out: rowsum(dO * O)
                                  stride_on, stride_oh, stride_dn, stride_dh, n_tokens,
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
def _dkdv_inner(dk, dv, k, v,
                Q_h,  # (L, D) this sequence's queries for head h, row stride stride_qn
                DO_h,  # (L, D) their output gradients, row stride stride_dn
                LSE_h,  # (L,) fp32 the forward's row log-sum-exp
                DELTA_h,  # (L,) fp32 rowsum(dO * O)
                stride_qn, stride_dn, offs_n, offs_d, lo, hi, L, qk_scale, seed, bh, dropout_p,
                BLOCK_M: tl.constexpr, MASK: tl.constexpr, DROPOUT: tl.constexpr,
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
def _varlen_bwd_dkdv_kernel(Q,  # (N, H, D) packed queries, walked a query block at a time
                            K,  # (N, H, D) packed keys: this program's key block, loaded once
                            V,  # (N, H, D) packed values: this program's block, loaded once
                            DO,  # (N, H, D) output gradient, walked with Q
                            DK,  # (N, H, D) out: key gradient, k's dtype
                            DV,  # (N, H, D) out: value gradient
                            LSE,  # (H, N) fp32 the forward's row log-sum-exp, walked with Q
                            DELTA,  # (H, N) fp32 rowsum(dO * O), walked with Q
                            CU,  # (B + 1,) int32 sequence starts: this program's sequence and its length
                            SEED,  # (1,) int64 Philox seed, the forward's (DROPOUT)
                            sm_scale, qk_scale, dropout_p, stride_qn, stride_qh, stride_kn, stride_kh, stride_vn,
                            stride_vh, stride_dn, stride_dh,
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
def _dq_inner(dq, q, do, lse, delta,
              K_h,  # (L, D) this sequence's keys for head h, row stride stride_kn
              V_h,  # (L, D) its values, row stride stride_vn
              stride_kn, stride_vn, offs_m, offs_d, lo, hi, L, qk_scale, seed, bh, dropout_p, BLOCK_N: tl.constexpr,
              MASK: tl.constexpr, CAUSAL: tl.constexpr, DROPOUT: tl.constexpr,
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
def _varlen_bwd_dq_kernel(Q,  # (N, H, D) packed queries: this program's query block, loaded once
                          K,  # (N, H, D) packed keys, walked a key block at a time
                          V,  # (N, H, D) packed values, walked with K
                          DO,  # (N, H, D) output gradient of this query block
                          DQ,  # (N, H, D) out: query gradient, q's dtype
                          LSE,  # (H, N) fp32 row log-sum-exp of this query block
                          DELTA,  # (H, N) fp32 rowsum(dO * O) of this query block
                          CU,  # (B + 1,) int32 sequence starts: where this block's sequence lies
                          SEED,  # (1,) int64 the forward's Philox seed (DROPOUT)
                          sm_scale, qk_scale, dropout_p, stride_qn, stride_qh, stride_kn, stride_kh, stride_vn,
                          stride_vh, stride_dn, stride_dh,
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


# ---- operators -----------------------------------------------------------------------------------
# Tiles: attention_common.tiles, the padded kernels' table (the policy and its reason are written there).
def _flags(q: torch.Tensor, causal: bool, dropout_p: float) -> dict:
    return dict(HEAD_D=q.shape[-1], CAUSAL=causal, DROPOUT=dropout_p > 0, **dot_flags(q))


@kernel_op("varlen_attn_fwd")
def varlen_attn_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                    seed: Optional[torch.Tensor], max_seqlen: int, causal: bool, dropout_p: float,
                    softmax_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(output (N, H, D) in q's dtype, lse (H, N) fp32 in base-2 units of the scaled scores)."""
    q, k, v = heads(q), heads(k), heads(v)
    n, h, d = q.shape
    o = torch.empty((n, h, d), dtype=q.dtype, device=q.device)
    lse = torch.empty((h, n), dtype=torch.float32, device=q.device)
    batch = cu_seqlens.shape[0] - 1
    if n and batch and max_seqlen:
        block_m, block_n, options = tiles(q, backward=False)
        with cuda_device_guard(q.device):
            launch(_varlen_fwd_kernel, (cdiv(max_seqlen, block_m), h, batch), q, k, v, o, lse, cu_seqlens,
                   seed if seed is not None else cu_seqlens, softmax_scale * LOG2E, dropout_p,
                   q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), o.stride(0),
                   o.stride(1), n, h, BLOCK_M=block_m, BLOCK_N=block_n, **_flags(q, causal, dropout_p), **options)
    return o, lse


@kernel_op("varlen_attn_bwd")
def varlen_attn_bwd(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor,
                    lse: torch.Tensor, cu_seqlens: torch.Tensor, seed: Optional[torch.Tensor], max_seqlen: int,
                    causal: bool, dropout_p: float, softmax_scale: float
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dq, dk, dv, each (N, H, D) in q's dtype, from the forward's output and lse."""
    q, k, v, do = heads(q), heads(k), heads(v), heads(do)
    n, h, d = q.shape
    dq, dk, dv = (torch.empty((n, h, d), dtype=q.dtype, device=q.device) for _ in range(3))
    delta = torch.empty((h, n), dtype=torch.float32, device=q.device)
    batch = cu_seqlens.shape[0] - 1
    if n and batch and max_seqlen:
        block_m, block_n, options = tiles(q, backward=True)
        tile_args = dict(BLOCK_M=block_m, BLOCK_N=block_n, **_flags(q, causal, dropout_p), **options)
        seed_arg = seed if seed is not None else cu_seqlens
        strides = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), do.stride(0),
                   do.stride(1))
        with cuda_device_guard(q.device):
            block = 64 if q.device.type == "cuda" else block_m
            launch(_varlen_bwd_preprocess_kernel, (cdiv(n, block), h), o, do, delta, o.stride(0), o.stride(1),
                   do.stride(0), do.stride(1), n, HEAD_D=d, BLOCK=block)
            launch(_varlen_bwd_dkdv_kernel, (cdiv(max_seqlen, block_n), h, batch), q, k, v, do, dk, dv, lse, delta,
                   cu_seqlens, seed_arg, softmax_scale, softmax_scale * LOG2E, dropout_p, *strides, dk.stride(0),
                   dk.stride(1), dv.stride(0), dv.stride(1), n, h, **tile_args)
            launch(_varlen_bwd_dq_kernel, (cdiv(max_seqlen, block_m), h, batch), q, k, v, do, dq, lse, delta,
                   cu_seqlens, seed_arg, softmax_scale, softmax_scale * LOG2E, dropout_p, *strides, dq.stride(0),
                   dq.stride(1), n, h, **tile_args)
    elif n:  # no sequence covers the tokens (an empty batch): nothing reaches them
        dq.zero_(), dk.zero_(), dv.zero_()
    return dq, dk, dv


_VarlenEager = register_autograd(varlen_attn_fwd, varlen_attn_bwd)


# ---- functionals and module ----------------------------------------------------------------------
def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
           dropout_p: float) -> None:
    op = "varlen_attention"
    check_inputs(op, q, k, v, 3, "(N, H, D), the packed tokens")
    if not (q.shape == k.shape == v.shape):
        raise ValueError(f"{op}: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}: they must be equal")
    check_head_dim(op, q.shape[-1])
    if cu_seqlens.dtype != torch.int32 or cu_seqlens.dim() != 1 or cu_seqlens.numel() < 1:
        raise ValueError(f"{op}: cu_seqlens has dtype {cu_seqlens.dtype} and shape {tuple(cu_seqlens.shape)}: it "
                         "must be int32 (B + 1,), the sequence starts and the token count")
    if not isinstance(max_seqlen, int) or max_seqlen < 0 or (q.shape[0] and not max_seqlen):
        raise ValueError(f"{op}: max_seqlen is {max_seqlen!r}: it must be a Python int, the longest sequence "
                         "(computed on the host, with cu_seqlens)")
    check_dropout(op, dropout_p, max_seqlen * max_seqlen, "max_seqlen^2")
    check_launchable(op, _varlen_fwd_kernel, [q, k, v, cu_seqlens])


def varlen_attention_with_seed(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                               max_seqlen: int, causal: bool = False, dropout_p: float = 0.0,
                               softmax_scale: Optional[float] = None, seed: Optional[torch.Tensor | int] = None
                               ) -> torch.Tensor:
    """`varlen_attention` with an explicit dropout seed (an int or a (1,) int64 tensor; None: drawn on the
    device per call); tests compare its dropout with `varlen_attention_keep_mask(seed, ...)`."""
    _check(q, k, v, cu_seqlens, max_seqlen, dropout_p)
    scale = float(softmax_scale) if softmax_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    seed = call_seed(dropout_p, seed, q.device)
    forward = varlen_attn_fwd if compiling() else _VarlenEager.apply
    return forward(q, k, v, cu_seqlens, seed, int(max_seqlen), bool(causal), float(dropout_p), scale)[0]


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                     causal: bool = False, dropout_p: float = 0.0, softmax_scale: Optional[float] = None
                     ) -> torch.Tensor:
    """Attention within each packed sequence; differentiable in q, k and v.

    q, k, v: (N, H, D), D in 16/32/64/128, fp32/fp16/bf16 (all three alike), the B sequences' tokens one
    after another; cu_seqlens: (B + 1,) int32 on q's device, sequence b = tokens [cu_seqlens[b],
    cu_seqlens[b + 1]), cu_seqlens[B] = N; max_seqlen: the longest sequence, a Python int (from the
    host, with cu_seqlens: the kernels never read a value back).  causal: token i sees its sequence's
    tokens <= i.  softmax_scale defaults to 1/sqrt(D).  Dropout on the probabilities (dropout_p) draws
    a Philox seed on the device per call (`varlen_attention_with_seed` takes one).
    Returns (N, H, D) in q's dtype.  The signature and contract of
    `uer_ds.kernels.reference.varlen_attention`.
    ValueError for shapes, dtypes, head dims or arguments outside their range.
    """
    return varlen_attention_with_seed(q, k, v, cu_seqlens, max_seqlen, causal, dropout_p, softmax_scale)


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
