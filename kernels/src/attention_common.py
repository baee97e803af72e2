"""What the padded and the varlen FlashAttention-2 kernels share: the per-tile arithmetic, the tile
table, the argument checks, the autograd wiring and the dropout mask.

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

Tuning policy (every kernel of this package, LayerNorm's included): fixed launch tables, looked up in
plain Python from the head dim (LayerNorm: the row width) and the dtype; no `triton.autotune`.  Why:
- a launch's host cost sets the pace at BERT's sizes (README, "Kernels": 104-170 us of CPU time per
  call against 10-40 us of GPU time on an H100), and an autotuned kernel adds a Python layer to every
  launch (key building, config lookup, a callable grid);
- the autotuner's first call per key times each config with `do_bench`, which synchronises the
  device: that breaks the "no host wait outside report steps" budget (`uer-ds bench overhead`) and
  cannot run inside a CUDA-graph capture, so the first step would need a warm-up outside it;
- the tile it picks depends on timings, so two runs (or two ranks) may take different tiles, hence
  different summation orders, and lose bitwise repeatability; a table gives the same bits every run;
- `python -m uer_ds.kernels.compile_check` then compiles exactly the variants that run (with the
  autotuner it also compiled configs that never win and some over the shared-memory limit).
The tables are FlashAttention-2's usual tiles, not yet tuned on a GPU; a row changes only with a GPU
measurement (`uer-ds bench kernels`) written beside it.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import triton
import triton.language as tl

from uer_ds.kernels.utils import as_seed, cdiv, check_dtype, check_launchable, cuda_device_guard, eager_function

HEAD_DIMS = (16, 32, 64, 128)  # powers of two that tl.dot tiles take (>= 16); the issue asks 32/64/128
LOG2E = 1.4426950408889634

# ---- tiles ---------------------------------------------------------------------------------------
# GPU, per head dim: (BLOCK_M, BLOCK_N, num_warps, num_stages).  Forward: 128 queries x 64 keys; the
# backward (dK/dV and dQ kernels alike) holds five tiles at once: 64 x 64.  fp32 (a test dtype, not a
# speed target) takes smaller tiles.  compile_check: at most 64 KB of shared memory for 16-bit
# inputs, 68 KB for fp32 (sm_90).
GPU_FWD_TILES = {16: (128, 64, 4, 3), 32: (128, 64, 4, 3), 64: (128, 64, 4, 3), 128: (128, 64, 8, 3)}
GPU_BWD_TILES = {16: (64, 64, 4, 2), 32: (64, 64, 4, 2), 64: (64, 64, 4, 2), 128: (64, 64, 8, 2)}
# Interpreter (BLOCK_M, BLOCK_N): small, unequal tiles, so that the tests' short sequences (17, 130)
# cross several blocks, leave ragged tails, and take the causal split with BLOCK_M != BLOCK_N.
INTERPRET_BLOCKS = (32, 16)


def gpu_tiles(d: int, fp32: bool, backward: bool) -> tuple[int, int, dict]:
    """(BLOCK_M, BLOCK_N, launch options) on a GPU for head dim d (compile_check enumerates these)."""
    block_m, block_n, warps, stages = (GPU_BWD_TILES if backward else GPU_FWD_TILES)[d]
    if fp32:
        block_m, block_n, stages = (32, 32, 2) if d == 128 else (64, 32, 2)
    return block_m, block_n, {"num_warps": warps, "num_stages": stages}


def tiles(q: torch.Tensor, backward: bool) -> tuple[int, int, dict]:
    """(BLOCK_M, BLOCK_N, launch options) for q's head dim (last dim), device and dtype."""
    if q.device.type != "cuda":
        return INTERPRET_BLOCKS[0], INTERPRET_BLOCKS[1], {}
    return gpu_tiles(q.shape[-1], q.dtype == torch.float32, backward)


def dot_flags(q: torch.Tensor) -> dict:
    """UPCAST (the interpreter's bf16 tl.dot multiplies raw bits: feed it fp32) and DOT_PRECISION (fp32
    inputs take IEEE fp32, not TF32)."""
    return dict(UPCAST=q.device.type != "cuda", DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32")


def heads(t: torch.Tensor) -> torch.Tensor:
    """Unit stride on the head dim (what the kernels assume); a no-op for the model's views."""
    return t if t.stride(-1) == 1 else t.contiguous()


# ---- argument checks -----------------------------------------------------------------------------
def check_inputs(op: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dims: int, layout: str) -> None:
    """ValueError unless q, k, v are `dims`-d float tensors (`layout`) of one dtype with a supported head dim."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_dtype(op, name, t)
        if t.dim() != dims:
            raise ValueError(f"{op}: {name} has shape {tuple(t.shape)}: it must be {dims}-d {layout}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"{op}: q, k, v have dtypes {q.dtype}, {k.dtype}, {v.dtype}: they must be equal")


def check_head_dim(op: str, d: int) -> None:
    if d not in HEAD_DIMS:
        raise ValueError(f"{op}: head dim {d} is not supported: it must be one of {', '.join(map(str, HEAD_DIMS))}")


def check_dropout(op: str, dropout_p: float, counter: int, what: str) -> None:
    """ValueError unless 0 <= dropout_p < 1 and, with dropout, the row stream's counter (`what` =
    `counter`, the largest i * row_len + j) fits Philox's 32 bits."""
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"{op}: dropout_p is {dropout_p}: it must be in [0, 1)")
    if dropout_p > 0 and counter >= 2 ** 31:
        raise ValueError(f"{op}: {what} = {counter} with dropout: it must be < 2**31 (the dropout stream's 32-bit "
                         "counter)")


# ---- autograd ------------------------------------------------------------------------------------
# Both forward operators take (q, k, v, where, seed, *settings) and return (o, lse, *extra); both
# backward operators take (do, q, k, v, o, lse, where, *extra, seed, *settings) and return dq, dk, dv.
# `where` locates the keys (padded: the key padding mask; varlen: cu_seqlens); `extra` is what the
# forward computed for the backward (padded: the key ranges); settings are Python scalars.
def _setup(ctx, inputs, output) -> None:
    ctx.set_materialize_grads(False)  # the statistics' gradients are never used: no zeros to make
    q, k, v, where, seed, *settings = inputs
    o, lse, *extra = output
    ctx.save_for_backward(q, k, v, o, lse, where, *extra, seed)
    ctx.settings = tuple(settings)


def _backward_with(bwd: Callable) -> Callable:
    """The backward formula, calling `bwd` (the registered operator, or its plain launcher when eager)."""

    def backward(ctx, do, *_stats):
        dq, dk, dv = bwd(do, *ctx.saved_tensors, *ctx.settings)
        return (dq, dk, dv, None, None) + (None,) * len(ctx.settings)
    return backward


def register_autograd(fwd, bwd) -> type:
    """Register the backward of forward operator `fwd` (its `bwd` operator) and return the eager
    autograd Function over their plain launchers (see utils.eager_function)."""
    fwd.register_autograd(_backward_with(bwd), setup_context=_setup)
    return eager_function(fwd.launcher, _setup, _backward_with(bwd.launcher))


# ---- per-tile arithmetic (jit helpers) -----------------------------------------------------------
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


# ---- the dropout mask, materialised (tests) ------------------------------------------------------
@triton.jit
def _keep_mask_kernel(KEEP,  # (B*H, Tq, Tk) int8 out: 1 where dropout keeps the probability
                      CU,  # (B + 1,) int32 sequence starts (VARLEN; otherwise unread)
                      SEED,  # (1,) int64 Philox seed
                      H, Tq, Tk, dropout_p, VARLEN: tl.constexpr, BLOCK: tl.constexpr):
    """Padded: row_len Tk for every row.  VARLEN: Tq = Tk = max_seqlen, sequence b's own length as
    row_len, 0 past its end."""
    bh = tl.program_id(2)
    offs_m = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    offs_n = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    if VARLEN:
        b = bh // H
        length = tl.load(CU + b + 1) - tl.load(CU + b)
        keep = dropout_keep(tl.load(SEED), bh, offs_m, offs_n, length, dropout_p)
        keep = keep & (offs_m[:, None] < length) & (offs_n[None, :] < length)
    else:
        keep = dropout_keep(tl.load(SEED), bh, offs_m, offs_n, Tk, dropout_p)
    tl.store(KEEP + bh.to(tl.int64) * Tq * Tk + offs_m[:, None] * Tk + offs_n[None, :], keep.to(tl.int8),
             mask=(offs_m[:, None] < Tq) & (offs_n[None, :] < Tk))


def _keep_mask(seed: torch.Tensor | int, b: int, h: int, tq: int, tk: int, dropout_p: float,
               device: torch.device | str, cu_seqlens: Optional[torch.Tensor]) -> torch.Tensor:
    keep = torch.empty((b, h, tq, tk), dtype=torch.int8, device=device)
    check_launchable("dropout_keep_mask", _keep_mask_kernel, [keep] + ([cu_seqlens] if cu_seqlens is not None else []))
    if keep.numel():
        with cuda_device_guard(keep.device):
            _keep_mask_kernel[(cdiv(tq, 32), cdiv(tk, 32), b * h)](
                keep, cu_seqlens if cu_seqlens is not None else keep, as_seed(seed, keep.device), h, tq, tk,
                float(dropout_p), VARLEN=cu_seqlens is not None, BLOCK=32)
    return keep.bool()


def attention_keep_mask(seed: torch.Tensor | int, shape: tuple[int, int, int, int], dropout_p: float,
                        device: torch.device | str = "cuda") -> torch.Tensor:
    """The (B, H, Tq, Tk) bool mask of kept probabilities that attention_with_seed(..., seed=seed) uses
    (for tests)."""
    b, h, tq, tk = shape
    return _keep_mask(seed, b, h, tq, tk, dropout_p, device, None)


def varlen_attention_keep_mask(seed: torch.Tensor | int, cu_seqlens: torch.Tensor, heads: int, max_seqlen: int,
                               dropout_p: float) -> torch.Tensor:
    """(B, H, max_seqlen, max_seqlen) bool: the probabilities varlen_attention_with_seed(..., seed=seed)
    keeps in sequence b, head h (False past the sequence's end); on cu_seqlens' device (tests)."""
    return _keep_mask(seed, cu_seqlens.numel() - 1, heads, max_seqlen, max_seqlen, dropout_p, cu_seqlens.device,
                      cu_seqlens)
