"""`uer-ds bench kernels`: LayerNorm GB/s and attention TFLOP/s, ours against PyTorch.

Ops: `layer_norm` (LN(x + residual)), `sublayer` (LN(dropout(x + bias) + residual), the post-LN
sublayer's close), `attention` (padded (B, H, T, D) batches), `varlen` (packed sequences whose lengths
follow real fine-tuning data: book_review and CMRC2018 as the project's readers cut them, kept in
length_distributions.json; a synthetic uniform 1..seq; `full`, no padding).

Providers: `triton` (ours: uer_ds.kernels; for varlen the unpadded kernel), `torch` (the reference,
eager; attention through SDPA's math backend, i.e. explicit softmax(QK^T)V), `compile`
(torch.compile of the reference), `sdpa` (the reference as shipped: F.scaled_dot_product_attention,
which picks flash / memory-efficient / cuDNN itself and leaves the flash path when given a padding
mask; for varlen: the batch padded to its longest row, as the model's torch path runs it),
`torch_varlen` (torch.nn.attention.varlen.varlen_attn, FlashAttention's varlen kernel, where this
torch has it) and `triton_padded` (our padded kernel on the padded batch).  Modes: fwd, bwd
(backward of a retained graph), fwd+bwd.  Each row records the GPU name.

Timing (GPU): `triton.testing.do_bench` (ms: CUDA events around each call, host time included: at
10-40 us per kernel the launch path can set the pace) and `triton.testing.do_bench_cudagraph`
(ms_graph: the calls captured in a CUDA graph and replayed, device time only); the tables give the
graph figure first, do_bench's in parentheses.

Units (the same byte and flop counts for every provider, so ratios are speed ratios):
- LayerNorm bytes: fwd reads x and writes y, bwd reads x and dy and writes dx (2 and 3 x M*N
  elements; weights, statistics and partials are ignored); GB/s = bytes / time.  sublayer: fwd reads
  x and residual and writes y (3), bwd reads dy, x, residual and writes dx, dresidual (5).
- Attention flops: 4*B*H*Tq*Tk*D for the forward (two matmuls), 2.5x that for the backward (five),
  halved when causal; padded batches are counted as if dense (effective TFLOP/s).  varlen: the
  real tokens' work, 4*H*D*sum(L_b^2), for every provider (padding is work not counted).

On CPU there is nothing to measure: `--interpret` runs tiny shapes through Triton's interpreter to
prove the command, its table, JSON and chart end to end (its timings mean nothing).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
PROVIDERS = ("triton", "torch", "compile", "sdpa", "torch_varlen", "triton_padded")
OPS = ("layer_norm", "sublayer", "attention", "varlen")
MODES = ("fwd", "bwd", "fwd+bwd")
# nominal HBM bandwidth (bytes/s) by device-name fragment, for the LayerNorm "% of peak" column
PEAK_BANDWIDTH = {"H200": 4.8e12, "H100 SXM": 3.35e12, "H100 80GB HBM3": 3.35e12, "H100 PCIe": 2.0e12,
                  "H100": 3.35e12, "A100-SXM4-80GB": 2.04e12, "A100": 1.555e12}

GPU_DEFAULTS = dict(hidden=[768, 1024, 2048, 4096, 8192], rows=16384, seq=[128, 256, 512, 1024, 2048, 4096],
                    head_dim=[64, 128], tokens=16384, attn_hidden=2048, varlen_seq=[128, 512],
                    lengths=["book_review", "cmrc2018", "uniform", "full"])
INTERPRET_DEFAULTS = dict(hidden=[128, 768], rows=64, seq=[32], head_dim=[32], tokens=64, attn_hidden=64,
                          varlen_seq=[32], lengths=["book_review", "full"])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ops", nargs="+", choices=OPS, default=list(OPS), help="which kernels to measure")
    parser.add_argument("--providers", nargs="+", choices=PROVIDERS, default=None,
                        help="implementations to compare (default: all; with --interpret: triton torch sdpa)")
    parser.add_argument("--dtype", choices=list(DTYPES), default="bf16", help="input dtype (default bf16)")
    parser.add_argument("--hidden", type=int, nargs="+", help="LayerNorm hidden sizes (default 768..8192)")
    parser.add_argument("--rows", type=int, help="LayerNorm rows, i.e. tokens (default 16384)")
    parser.add_argument("--seq", type=int, nargs="+", help="attention sequence lengths (default 128..4096)")
    parser.add_argument("--head_dim", type=int, nargs="+", help="attention head dims (default 64 128)")
    parser.add_argument("--tokens", type=int, help="attention batch x seq, kept fixed across seq (default 16384)")
    parser.add_argument("--attn_hidden", type=int,
                        help="heads x head_dim (default 2048, FlashAttention-2's benchmark setting)")
    parser.add_argument("--varlen_seq", type=int, nargs="+",
                        help="varlen: the sequence lengths the data is cut at (default 128 512)")
    parser.add_argument("--lengths", nargs="+", choices=lengths_module().names(),
                        help="varlen: length distributions (default all: book_review cmrc2018 uniform full)")
    parser.add_argument("--causal", choices=("false", "true", "both"), default="false",
                        help="varlen: causal masking (default false: BERT)")
    parser.add_argument("--no_cudagraph", action="store_true",
                        help="GPU: time with do_bench only (no do_bench_cudagraph column)")
    parser.add_argument("--out", default="out/bench_kernels.json",
                        help="JSON results (default out/bench_kernels.json)")
    parser.add_argument("--chart", default=None,
                        help="PNG chart (default: the JSON path with .png; 'none' to skip; needs matplotlib)")
    parser.add_argument("--interpret", action="store_true",
                        help="CPU smoke run through Triton's interpreter on tiny shapes (timings meaningless)")


def lengths_module():
    from uer_ds.kernels import lengths

    return lengths


# ---- timing --------------------------------------------------------------------------------------
def _timer(cuda: bool, graphs: bool) -> Callable[[Callable[[], Any], list], dict]:
    """fn -> {"ms": ..., "ms_graph": ...} per call.  GPU: Triton's do_bench (median, host time included)
    and do_bench_cudagraph (median of CUDA-graph replays: device time); CPU: one timed call after a
    warm-up (the interpreter smoke run), for both."""
    if cuda:
        import triton.testing

        def gpu(fn, grads):
            out = {"ms": triton.testing.do_bench(fn, warmup=25, rep=100, grad_to_none=grads, return_mode="median")}
            if graphs:
                try:
                    out["ms_graph"] = triton.testing.do_bench_cudagraph(fn, rep=50, grad_to_none=grads,
                                                                        return_mode="median")
                except Exception as err:  # a provider that cannot be captured keeps its do_bench figure
                    out["graph_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"
            return out
        return gpu

    def cpu(fn, grads):
        fn()
        start = time.perf_counter()
        fn()
        ms = (time.perf_counter() - start) * 1e3
        return {"ms": ms, "ms_graph": ms}
    return cpu


def _measure(forward: Callable[[], torch.Tensor], leaves: list, timer) -> dict[str, dict]:
    """Timings ({"ms", "ms_graph"}) for fwd, bwd and fwd+bwd of `forward` (a closure over `leaves`)."""
    out = forward()
    grad = torch.randn_like(out)
    result = {"fwd": timer(lambda: forward(), leaves)}
    result["bwd"] = timer(lambda: out.backward(grad, retain_graph=True), leaves)
    result["fwd+bwd"] = timer(lambda: forward().backward(grad), leaves)
    return result


def _compiled(fn: Callable) -> Callable:
    import torch._dynamo.config as dynamo_config

    # one compiled function serves many shapes and masks: allow the recompiles (default limit 8)
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(getattr(dynamo_config, name), 512))
    return torch.compile(fn)


# ---- the two benchmarks --------------------------------------------------------------------------
def _layer_norm_rows(cfg: dict, providers: list[str], dtype: torch.dtype, device: str, timer) -> list[dict]:
    from uer_ds import kernels
    from uer_ds.kernels import reference

    impls = {"triton": kernels.layer_norm, "torch": reference.layer_norm}
    if "compile" in providers:
        impls["compile"] = _compiled(reference.layer_norm)
    rows = []
    for n in cfg["hidden"]:
        m = cfg["rows"]
        x = torch.randn(m, n, device=device, dtype=dtype, requires_grad=True)
        w = torch.ones(n, device=device, dtype=dtype, requires_grad=True)
        b = torch.zeros(n, device=device, dtype=dtype, requires_grad=True)
        elt = x.element_size()
        moved = {"fwd": 2 * m * n * elt, "bwd": 3 * m * n * elt, "fwd+bwd": 5 * m * n * elt}
        for provider in [p for p in providers if p in impls]:
            fn = impls[provider]
            ms = _try(lambda: _measure(lambda: fn(x, w, b, 1e-12), [x, w, b], timer))
            for mode in MODES:
                row = {"op": "layer_norm", "provider": provider, "mode": mode, "rows": m, "hidden": n}
                rows.append(_with_speed(row, ms, mode, "GB/s", moved[mode] / 1e9))
    return rows


def _sublayer_rows(cfg: dict, providers: list[str], dtype: torch.dtype, device: str, timer) -> list[dict]:
    """LN(dropout(x + bias) + residual) with dropout 0.1: the post-LN sublayer's close, ours fused."""
    from uer_ds import kernels
    from uer_ds.kernels import reference

    impls = {"triton": kernels.bias_dropout_add_layer_norm, "torch": reference.bias_dropout_add_layer_norm}
    if "compile" in providers:
        impls["compile"] = _compiled(reference.bias_dropout_add_layer_norm)
    rows = []
    for n in cfg["hidden"]:
        m = cfg["rows"]
        x, r = (torch.randn(m, n, device=device, dtype=dtype, requires_grad=True) for _ in range(2))
        bias, w, b = (torch.randn(n, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
        elt = x.element_size()
        moved = {"fwd": 3 * m * n * elt, "bwd": 5 * m * n * elt, "fwd+bwd": 8 * m * n * elt}
        for provider in [p for p in providers if p in impls]:
            fn = impls[provider]
            ms = _try(lambda: _measure(lambda: fn(x, bias, r, w, b, 1e-12, 0.1), [x, r, bias, w, b], timer))
            for mode in MODES:
                row = {"op": "sublayer", "provider": provider, "mode": mode, "rows": m, "hidden": n}
                rows.append(_with_speed(row, ms, mode, "GB/s", moved[mode] / 1e9))
    return rows


def _torch_varlen() -> Optional[Callable]:
    """torch.nn.attention.varlen.varlen_attn as (q, k, v, cu_seqlens, max_seqlen, causal) -> out, or None
    where this torch lacks it (its causal flag changed between releases: is_causal, then window_size)."""
    import inspect

    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    params = inspect.signature(varlen_attn).parameters

    def call(q, k, v, cu, max_seqlen, causal):
        if "is_causal" in params:
            return varlen_attn(q, k, v, cu, cu, max_seqlen, max_seqlen, is_causal=causal)
        return varlen_attn(q, k, v, cu, cu, max_seqlen, max_seqlen, window_size=(-1, 0) if causal else (-1, -1))
    return call


def _varlen_rows(cfg: dict, providers: list[str], dtype: torch.dtype, device: str, timer,
                 progress: Callable[[list[dict]], None] = lambda rows: None) -> list[dict]:
    """Packed batches whose lengths follow real data, ours (varlen) against the padded ways and torch's varlen.
    progress(rows so far) is called after each shape (the caller saves them: a run cut short keeps its rows)."""
    import numpy as np

    from uer_ds import kernels
    from uer_ds.kernels import reference

    lengths_mod = lengths_module()
    distributions = lengths_mod.load()
    torch_varlen = _torch_varlen() if device == "cuda" else None
    rows = []
    rng = np.random.default_rng(0)
    for name in cfg["lengths"]:
        for seq in cfg["varlen_seq"]:
            batch = max(1, cfg["tokens"] // seq)
            lengths = lengths_mod.sample(name, seq, batch, rng, distributions)
            t = max(lengths)  # the runner pads a batch to its longest row
            cu = torch.tensor([0] + np.cumsum(lengths).tolist(), dtype=torch.int32, device=device)
            slot = torch.cat([torch.arange(n, device=device) + i * t for i, n in enumerate(lengths)])
            kpm = (torch.arange(t)[None, :] >= torch.tensor(lengths)[:, None]).to(device)
            padded = bool(kpm.any())
            for d in cfg["head_dim"]:
                heads = max(1, cfg["attn_hidden"] // d)
                q, k, v = (torch.randn(len(slot), heads, d, device=device, dtype=dtype, requires_grad=True)
                           for _ in range(3))
                rows += _varlen_shape_rows(cfg, providers, q, k, v, cu, slot, kpm if padded else None, lengths, t,
                                           dict(lengths=name, seq=seq, batch=batch, head_dim=d, heads=heads,
                                                tokens=len(slot), padding=round(1 - len(slot) / (batch * t), 3)),
                                           torch_varlen, kernels, reference, timer)
                progress(rows)
                del q, k, v
                if device == "cuda":
                    torch.cuda.empty_cache()
    return rows


def _varlen_shape_rows(cfg, providers, q, k, v, cu, slot, kpm, lengths, t, shape, torch_varlen, kernels, reference,
                       timer) -> list[dict]:
    n, heads, d = q.shape
    b = len(lengths)

    def padded(x):  # (N, H, D) -> (B, H, T, D): the padded batch the torch path computes on
        return x.new_zeros(b * t, heads, d).index_copy(0, slot, x).view(b, t, heads, d).transpose(1, 2)

    rows = []
    causal_options = {"false": (False,), "true": (True,), "both": (False, True)}[cfg["causal"]]
    for causal in causal_options:
        impls = {"triton": lambda: kernels.varlen_attention(q, k, v, cu, t, causal=causal),
                 "sdpa": lambda: reference.attention(padded(q), padded(k), padded(v), key_padding_mask=kpm,
                                                     causal=causal),
                 "triton_padded": lambda: kernels.attention(padded(q), padded(k), padded(v), key_padding_mask=kpm,
                                                            causal=causal)}
        if torch_varlen is not None:
            impls["torch_varlen"] = lambda: torch_varlen(q, k, v, cu, t, causal)
        flops = 4 * heads * d * sum(L * L for L in lengths) * (0.5 if causal else 1.0)
        work = {"fwd": flops, "bwd": 2.5 * flops, "fwd+bwd": 3.5 * flops}
        for provider in [p for p in providers if p in impls]:
            ms = _try(lambda: _measure(impls[provider], [q, k, v], timer))
            for mode in MODES:
                row = {"op": "varlen", "provider": provider, "mode": mode, **shape, "causal": causal}
                rows.append(_with_speed(row, ms, mode, "TFLOP/s", work[mode] / 1e12))
    return rows


def _attention_rows(cfg: dict, providers: list[str], dtype: torch.dtype, device: str, timer) -> list[dict]:
    from uer_ds import kernels
    from uer_ds.kernels import reference

    def eager(*args, **kw):  # the reference with SDPA pinned to its math backend: explicit softmax(QK^T)V
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel(SDPBackend.MATH):
            return reference.attention(*args, **kw)

    impls = {"triton": kernels.attention, "torch": eager, "sdpa": reference.attention}
    if "compile" in providers:
        impls["compile"] = _compiled(reference.attention)
    g = torch.Generator().manual_seed(0)
    rows = []
    for d in cfg["head_dim"]:
        heads = max(1, cfg["attn_hidden"] // d)
        for t in cfg["seq"]:
            batch = max(1, cfg["tokens"] // t)
            q, k, v = (torch.randn(batch, heads, t, d, device=device, dtype=dtype, requires_grad=True)
                       for _ in range(3))
            # BERT-like padded batch: lengths uniform in [T/2, T], one full row
            lengths = torch.randint(t // 2, t + 1, (batch,), generator=g)
            lengths[0] = t
            padding = (torch.arange(t)[None, :] >= lengths[:, None]).to(device)
            for padded in (False, True):
                for causal in (False, True):
                    flops = 4 * batch * heads * t * t * d * (0.5 if causal else 1.0)
                    work = {"fwd": flops, "bwd": 2.5 * flops, "fwd+bwd": 3.5 * flops}
                    kpm = padding if padded else None
                    for provider in [p for p in providers if p in impls]:
                        fn = impls[provider]
                        ms = _try(lambda: _measure(lambda: fn(q, k, v, key_padding_mask=kpm, causal=causal),
                                                   [q, k, v], timer))
                        for mode in MODES:
                            row = {"op": "attention", "provider": provider, "mode": mode, "batch": batch,
                                   "heads": heads, "seq": t, "head_dim": d, "padded": padded, "causal": causal}
                            rows.append(_with_speed(row, ms, mode, "TFLOP/s", work[mode] / 1e12))
            del q, k, v
            if device == "cuda":
                torch.cuda.empty_cache()
    return rows


def _try(measure: Callable[[], dict]) -> dict:
    """ms per mode, or {'error': ...} where a provider cannot run a shape (out of memory, compile failure)."""
    try:
        return measure()
    except Exception as err:  # a benchmark row records the failure and the run goes on
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}"}


def _with_speed(row: dict, ms: dict, mode: str, unit: str, amount: float) -> dict:
    """The row with ms, ms_graph and the speed by each (`unit` and `unit graph`)."""
    if "error" in ms:
        return {**row, "ms": None, unit: None, "error": ms["error"]}
    timing = ms[mode]
    row = {**row, "ms": float(f"{timing['ms']:.4g}"), unit: float(f"{amount / (timing['ms'] / 1e3):.4g}")}
    if timing.get("ms_graph"):
        row.update({"ms_graph": float(f"{timing['ms_graph']:.4g}"),
                    f"{unit} graph": float(f"{amount / (timing['ms_graph'] / 1e3):.4g}")})
    if timing.get("graph_error"):
        row["graph_error"] = timing["graph_error"]
    return row


# ---- report --------------------------------------------------------------------------------------
def _peak_bandwidth(device_name: str) -> Optional[float]:
    for fragment, peak in PEAK_BANDWIDTH.items():
        if fragment in device_name:
            return peak
    return None


def _table(rows: list[dict], keys: list[str], unit: str, providers: list[str], bases: list[str],
           peak: Optional[float] = None) -> str:
    """One line per (shape, mode): each provider's speed (CUDA-graph timing, do_bench's in parentheses
    where they differ), ours / each base (by the graph timing), and % of peak bandwidth."""
    groups: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[k] for k in keys) + (row["mode"],)
        groups.setdefault(key, {})[row["provider"]] = (row.get(f"{unit} graph") or row.get(unit), row.get(unit))
    present = [p for p in providers if any(p in g for g in groups.values())]
    bases = [b for b in bases if b in present and b != "triton"]
    head = [*keys, "mode", *[f"{p} {unit}" for p in present], *[f"triton/{b}" for b in bases]]
    head += ["% peak"] if peak else []
    lines = [head]
    for key, speeds in groups.items():
        ours = speeds.get("triton", (None, None))[0]
        cells = [str(v) for v in key] + [_cell(*speeds.get(p, (None, None))) for p in present]
        for base in bases:
            ref = speeds.get(base, (None, None))[0]
            cells.append(f"{ours / ref:.3g}x" if ours is not None and ref else "n/a")
        if peak:
            cells.append(f"{100 * ours * 1e9 / peak:.0f}%" if ours is not None else "n/a")
        lines.append(cells)
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(str(c).rjust(w) for c, w in zip(line, widths)) for line in lines)


def _cell(graph: Optional[float], plain: Optional[float]) -> str:
    if graph is None:
        return "n/a"
    if plain is None or _fmt(graph) == _fmt(plain):
        return _fmt(graph)
    return f"{_fmt(graph)} ({_fmt(plain)})"


def _fmt(speed: Optional[float]) -> str:
    return "n/a" if speed is None else f"{speed:.1f}" if speed >= 10 else f"{speed:.3g}"


def _chart(result: dict, path: Path) -> Optional[str]:
    """A PNG: LayerNorm (and sublayer) fwd+bwd GB/s by hidden size; attention and varlen fwd+bwd TFLOP/s by
    sequence length (CUDA-graph timings where measured)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib, or the 'bench' extra): no chart"
    attn = [r for r in result["attention"] if r["mode"] == "fwd+bwd"]
    varlen = [r for r in result.get("varlen", []) if r["mode"] == "fwd+bwd"]
    panels = [(op, None) for op in ("layer_norm", "sublayer") if result.get(op)]
    panels += [("attention", key) for key in sorted({(r["head_dim"], r["padded"], r["causal"]) for r in attn})]
    panels += [("varlen", key) for key in sorted({(r["lengths"], r["head_dim"], r["causal"]) for r in varlen})]
    if not panels:
        return "nothing measured: no chart"
    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, (op, key) in zip(axes.flat, panels):
        if op in ("layer_norm", "sublayer"):
            data, x, unit = [r for r in result[op] if r["mode"] == "fwd+bwd"], "hidden", "GB/s"
            ax.set_title("LayerNorm fwd+bwd" if op == "layer_norm" else "LN(dropout(x + bias) + residual) fwd+bwd")
        elif op == "varlen":
            data, x, unit = [r for r in varlen if (r["lengths"], r["head_dim"], r["causal"]) == key], "seq", "TFLOP/s"
            ax.set_title(f"varlen fwd+bwd, {key[0]} lengths, d={key[1]}{', causal' if key[2] else ''}")
        else:
            d, padded, causal = key
            data = [r for r in attn if (r["head_dim"], r["padded"], r["causal"]) == key]
            x, unit = "seq", "TFLOP/s"
            ax.set_title(f"attention fwd+bwd, d={d}{', padded' if padded else ''}{', causal' if causal else ''}")
        for provider in PROVIDERS:
            points = [(r[x], r.get(f"{unit} graph") or r[unit]) for r in data if r["provider"] == provider
                      and r.get(unit)]
            if points:
                ax.plot(*zip(*points), marker="o", label=provider)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(x)
        ax.set_ylabel(unit)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"uer_ds kernels on {result['device']} ({result['dtype']})"
                 + (" - interpreter smoke run, timings meaningless" if result["interpret"] else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# ---- command -------------------------------------------------------------------------------------
def _enter_interpreter() -> None:
    """TRITON_INTERPRET=1 must precede the first import of triton and of the kernels (see kernels/src/utils.py)."""
    if os.environ.get("TRITON_INTERPRET") != "1" and "triton" in sys.modules:
        raise ValueError("--interpret: triton was already imported in this process without TRITON_INTERPRET=1; "
                         "run the command in a fresh process")
    os.environ["TRITON_INTERPRET"] = "1"


def run(args: argparse.Namespace) -> int:
    cuda = torch.cuda.is_available() and not args.interpret
    if args.interpret:
        _enter_interpreter()
    elif not cuda:
        raise ValueError("bench kernels needs a CUDA GPU and found none; `uer-ds bench kernels --interpret` runs "
                         "a tiny CPU smoke test through Triton's interpreter instead (its timings mean nothing)")
    import triton

    defaults = INTERPRET_DEFAULTS if args.interpret else GPU_DEFAULTS
    cfg = {key: getattr(args, key) or value for key, value in defaults.items()}
    cfg["causal"] = args.causal
    providers = args.providers or (["triton", "torch", "sdpa"] if args.interpret else list(PROVIDERS))
    device = "cuda" if cuda else "cpu"
    device_name = torch.cuda.get_device_name() if cuda else "CPU (Triton interpreter)"
    dtype = DTYPES[args.dtype]
    if args.interpret and dtype == torch.bfloat16:
        dtype = torch.float32  # bf16 tl.dot is wrong in the interpreter (kernels upcast; keep the smoke simple)
    timer = _timer(cuda, graphs=not args.no_cudagraph)
    result = {"device": device_name, "dtype": str(dtype).replace("torch.", ""), "interpret": args.interpret,
              "torch": torch.__version__, "triton": triton.__version__, "providers": providers,
              "timing": "do_bench" + ("" if args.no_cudagraph or not cuda else " + do_bench_cudagraph"),
              **{op: [] for op in OPS}}
    print(f"uer-ds bench kernels on {device_name}, {result['dtype']}, torch {torch.__version__}, "
          f"triton {triton.__version__}" + ("  [interpreter smoke run: timings meaningless]" if args.interpret else "")
          + ("" if args.interpret or args.no_cudagraph else "\nspeeds: CUDA-graph replay (do_bench in parentheses)"))
    peak = _peak_bandwidth(device_name)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every op (and every varlen shape): a run stopped by a time limit keeps its rows
        out.write_text(json.dumps(result, indent=1) + "\n")

    if "layer_norm" in args.ops:
        result["layer_norm"] = _layer_norm_rows(cfg, providers, dtype, device, timer)
        save()
        print(f"\nLayerNorm ({cfg['rows']} rows), GB/s" + (f"; % peak of {peak / 1e12:.2f} TB/s" if peak else ""))
        print(_table(result["layer_norm"], ["hidden"], "GB/s", providers, ["torch"], peak))
    if "sublayer" in args.ops:
        result["sublayer"] = _sublayer_rows(cfg, providers, dtype, device, timer)
        save()
        print(f"\nLN(dropout(x + bias) + residual), dropout 0.1 ({cfg['rows']} rows), GB/s")
        print(_table(result["sublayer"], ["hidden"], "GB/s", providers, ["torch", "compile"], peak))
    if "attention" in args.ops:
        result["attention"] = _attention_rows(cfg, providers, dtype, device, timer)
        save()
        base = "sdpa" if "sdpa" in providers else "torch"
        print(f"\nattention ({cfg['tokens']} tokens, heads x head_dim = {cfg['attn_hidden']}), TFLOP/s")
        print(_table(result["attention"], ["head_dim", "seq", "padded", "causal"], "TFLOP/s", providers, [base]))
    if "varlen" in args.ops:
        result["varlen"] = _varlen_rows(cfg, providers, dtype, device, timer,
                                        progress=lambda rows: (result.__setitem__("varlen", rows), save()))
        print(f"\nvarlen attention (about {cfg['tokens']} positions per batch, padded to its longest row; heads x "
              f"head_dim = {cfg['attn_hidden']}; TFLOP/s of the real tokens' work)")
        print(_table(result["varlen"], ["lengths", "seq", "padding", "head_dim", "causal"], "TFLOP/s", providers,
                     ["torch_varlen", "sdpa", "triton_padded"]))
    errors = [r for op in OPS for r in result[op] if r.get("error")]
    for row in errors[:5]:
        print(f"n/a: {row['op']} {row['provider']}: {row['error']}")
    save()
    print(f"\nwrote {out}")
    if (args.chart or "").lower() != "none":
        chart = Path(args.chart) if args.chart else out.with_suffix(".png")
        problem = _chart(result, chart)
        print(problem if problem else f"wrote {chart}")
    return 0
