"""The per-tile arithmetic the padded and the varlen FlashAttention-2 kernels share.

Both kernels (kernels/src/flash_attention.py: a (B, H, T, D) batch with a key padding mask;
kernels/src/varlen_flash_attention.py: B sequences packed into (N, H, D)) differ in how they find, load
and mask a tile; once a tile of scores S = q k^T * scale * log2(e) is masked (-inf where a key is not
visible), what they do with it is the same, and lives here as @triton.jit helpers (inlined by
Triton's compiler into the kernels that call them: no launch, no cost).

Notation (Dao, FlashAttention-2, 2023, Algorithms 1 and 2), all in base 2: s (BLOCK_M, BLOCK_N) fp32
masked scores; m, l (BLOCK_M,) the running row max and row sum of exp2(s - m); lse = m + log2(l) the
row log-sum-exp the forward saves; delta = rowsum(dO * O).  Dropout keeps a probability when Philox
`tl.rand(seed + bh, i * row_len + j) >= p` (row_len: the key count of the row's sequence), the same
expression in the forward and both backward kernels, so the backward regenerates the forward's mask.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def dropout_keep(seed, bh, offs_m, offs_n, row_len, dropout_p):
    """(BLOCK_M, BLOCK_N) bool: which probabilities dropout keeps, for query rows offs_m and key
    columns offs_n of head bh (b * H + h); row_len: keys per query row of this sequence."""
    return tl.rand(seed + bh, offs_m[:, None] * row_len + offs_n[None, :]) >= dropout_p


@triton.jit
def softmax_step(acc, l_i, m_i, s, v, seed, bh, offs_m, offs_n, row_len, dropout_p, DROPOUT: tl.constexpr,
                 DOT_PRECISION: tl.constexpr):
    """One key tile of the online softmax: acc (BLOCK_M, D) fp32 += P~ v, rescaled to the new row max.
    s (BLOCK_M, BLOCK_N) masked scores; v (BLOCK_N, D).  l sums the probabilities before dropout (the
    softmax's denominator); dropout zeroes kept-out probabilities in the numerator only."""
    m_new = tl.maximum(m_i, tl.max(s, 1))
    m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with nothing visible yet: no NaN
    p = tl.math.exp2(s - m_ref[:, None])
    alpha = tl.math.exp2(m_i - m_ref)
    l_i = l_i * alpha + tl.sum(p, 1)
    if DROPOUT:
        p = tl.where(dropout_keep(seed, bh, offs_m, offs_n, row_len, dropout_p), p, 0.0)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
    return acc, l_i, m_new


@triton.jit
def softmax_finish(acc, l_i, m_i, dropout_p, DROPOUT: tl.constexpr):
    """The forward's epilogue: o = acc / l (and / (1 - p) under dropout), lse = m + log2(l).  A row
    that saw no visible key (l = 0) gets o = 0 and lse = +inf, so the backward's P is 0 there too."""
    dead = l_i == 0.0
    scale = 1.0 / tl.where(dead, 1.0, l_i)
    if DROPOUT:
        scale = scale / (1.0 - dropout_p)
    o = acc * scale[:, None]
    lse = tl.where(dead, float("inf"), m_i + tl.math.log2(tl.where(dead, 1.0, l_i)))
    return o, lse


@triton.jit
def dkdv_step(dk, dv, q, do, k, v, s, lse, delta, seed, bh, offs_m, offs_n, row_len, dropout_p,
              DROPOUT: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """One query tile's contribution to a key tile's gradients: dv += P~^T dO, dk += dS^T q (unscaled;
    the kernel multiplies dk by the softmax scale once at the end).  q, do (BLOCK_M, D); k, v
    (BLOCK_N, D); s masked scores; lse, delta (BLOCK_M,)."""
    p = tl.math.exp2(s - lse[:, None])  # the forward's probabilities; 0 where masked or dead
    dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)  # dL/d(dropped P)
    if DROPOUT:
        keep = dropout_keep(seed, bh, offs_m, offs_n, row_len, dropout_p)
        pd = tl.where(keep, p / (1.0 - dropout_p), 0.0)
        dp = tl.where(keep, dp / (1.0 - dropout_p), 0.0)
    else:
        pd = p
    dv += tl.dot(tl.trans(pd.to(do.dtype)), do, input_precision=DOT_PRECISION)
    ds = p * (dp - delta[:, None])
    dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=DOT_PRECISION)
    return dk, dv


@triton.jit
def dq_step(dq, do, kt, vt, s, lse, delta, seed, bh, offs_m, offs_n, row_len, dropout_p, DROPOUT: tl.constexpr,
            DOT_PRECISION: tl.constexpr):
    """One key tile's contribution to a query tile's gradient: dq += dS k (unscaled).  do (BLOCK_M, D);
    kt, vt (D, BLOCK_N): the key and value tiles transposed; s masked scores; lse, delta (BLOCK_M,)."""
    p = tl.math.exp2(s - lse[:, None])
    dp = tl.dot(do, vt, input_precision=DOT_PRECISION)
    if DROPOUT:
        keep = dropout_keep(seed, bh, offs_m, offs_n, row_len, dropout_p)
        dp = tl.where(keep, dp / (1.0 - dropout_p), 0.0)
    ds = p * (dp - delta[:, None])
    dq += tl.dot(ds.to(kt.dtype), tl.trans(kt), input_precision=DOT_PRECISION)
    return dq
