"""Compile the kernels for an NVIDIA GPU on a machine without one: `python -m uer_ds.kernels.compile_check`.

The interpreter runs the kernels' arithmetic on CPU but not Triton's compiler, whose rules it does
not enforce (types that must agree across a runtime `if`, tile shapes tl.dot accepts, shared memory
per config).  Triton's wheel carries ptxas, so `triton.compile` can lower every kernel variant the
launchers use to a cubin for a given architecture (default sm_90, H100/H200) with no GPU present;
this reports each variant's shared memory and fails on the first that does not compile, or when one
needs more shared memory than a block may take.  The variants are exactly what the launchers run:
the tiles come from fixed tables (attention_common.gpu_tiles, fused_layer_norm._launch), never from
an autotuner (the package's one tuning policy, written down in attention_common.py).

Run it where TRITON_INTERPRET is unset (the kernels must be imported as compiled functions).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, Iterator

ATTN_POINTERS = {"Q", "K", "V", "O", "DO", "DQ", "DK", "DV"}
# a block gets at most this much shared memory on an H100/H200 (227 KB): a variant over it cannot launch
SHARED_LIMIT = 232448


def _attn_type(dtype: str) -> Callable[[str], str]:
    def arg_type(name: str) -> str:
        if name in ATTN_POINTERS:
            return f"*{dtype}"
        if name in ("LSE", "DELTA"):
            return "*fp32"
        if name in ("KPM", "KEEP"):
            return "*i8"
        if name in ("KV_LO", "KV_HI", "LO", "HI", "CU"):
            return "*i32"
        if name == "SEED":
            return "*i64"
        if name in ("qk_scale", "sm_scale", "dropout_p"):
            return "fp32"
        return "i32"
    return arg_type


def _ln_type(dtype: str, residual_dtype: str) -> Callable[[str], str]:
    def arg_type(name: str) -> str:
        if name in ("X", "Y", "DY", "DX"):
            return f"*{dtype}"
        if name in ("R", "DR", "BIAS", "W", "B", "DW", "DB", "DBIAS"):
            return f"*{residual_dtype}"  # under autocast: fp32 residual stream and parameters
        if name in ("Mean", "Rstd", "DW_P", "DB_P", "DBIAS_P"):
            return "*fp32"
        if name == "SEED":
            return "*i64"
        if name == "KEEP":
            return "*i8"
        return "fp32" if name in ("eps", "dropout_p") else "i32"
    return arg_type


def variants(quick: bool) -> Iterator[tuple[object, Callable[[str], str], dict, dict]]:
    """(jit function, argument types, constexprs, launch options) for what the GPU launchers use."""
    from uer_ds.kernels import attention_common as common
    from uer_ds.kernels import flash_attention as fa
    from uer_ds.kernels import fused_layer_norm as ln
    from uer_ds.kernels import varlen_flash_attention as va

    dtypes = ["bf16"] if quick else ["bf16", "fp16", "fp32"]
    head_dims = [64] if quick else [32, 64, 128]
    flag_sets = [dict(CAUSAL=True, DROPOUT=True)] if quick else [dict(CAUSAL=False, DROPOUT=False),
                                                                 dict(CAUSAL=True, DROPOUT=True)]
    for dtype in dtypes:
        precision = "ieee" if dtype == "fp32" else "tf32"
        for d in head_dims:
            for flags in flag_sets:
                padded = dict(HAS_KPM=flags["CAUSAL"], EVEN_M=not flags["CAUSAL"], EVEN_N=not flags["CAUSAL"], **flags)
                for kernel, varlen_kernel, backward in ((fa._attn_fwd_kernel, va._varlen_fwd_kernel, False),
                                                        (fa._attn_bwd_dkdv_kernel, va._varlen_bwd_dkdv_kernel, True),
                                                        (fa._attn_bwd_dq_kernel, va._varlen_bwd_dq_kernel, True)):
                    block_m, block_n, launch = common.gpu_tiles(d, dtype == "fp32", backward)
                    tile = dict(HEAD_D=d, BLOCK_M=block_m, BLOCK_N=block_n, UPCAST=False, DOT_PRECISION=precision)
                    yield kernel, _attn_type(dtype), dict(**tile, **padded), launch
                    yield varlen_kernel, _attn_type(dtype), dict(**tile, **flags), launch
            yield fa._attn_bwd_preprocess_kernel, _attn_type(dtype), dict(HEAD_D=d, BLOCK_M=64), {}
            yield va._varlen_bwd_preprocess_kernel, _attn_type(dtype), dict(HEAD_D=d, BLOCK=64), {}
        yield from _ln_variants(ln, dtype, quick)
    yield fa._key_range_kernel, _attn_type("fp16"), dict(BLOCK=1024), {}
    for varlen in (False, True):
        yield common._keep_mask_kernel, _attn_type("fp16"), dict(VARLEN=varlen, BLOCK=32), {}


def _ln_variants(ln, dtype: str, quick: bool) -> Iterator[tuple[object, Callable[[str], str], dict, dict]]:
    """The LayerNorm kernels at the GPU launch shapes: several rows per program up to hidden 2048."""
    import torch

    cuda = torch.device("cuda")
    mixed = ["fp32"] if dtype == "bf16" else []  # autocast: bf16 activations, fp32 residual and weights
    for n in ([768, 8192] if quick else [128, 768, 1024, 2048, 4096, 8192]):
        block_m, block_n, launch = ln._launch(n, cuda)
        for other in [dtype] + mixed:
            arg_type = _ln_type(dtype, other)
            for flags in ([dict(HAS_BIAS=True, HAS_RESIDUAL=True, DROPOUT=True)] if quick else
                          [dict(HAS_BIAS=False, HAS_RESIDUAL=False, DROPOUT=False),
                           dict(HAS_BIAS=False, HAS_RESIDUAL=True, DROPOUT=False),
                           dict(HAS_BIAS=True, HAS_RESIDUAL=True, DROPOUT=True)]):
                yield ln._ln_fwd_kernel, arg_type, dict(BLOCK_M=block_m, BLOCK_N=block_n, **flags), launch
                store_dr = flags["HAS_RESIDUAL"] and (flags["DROPOUT"] or other != dtype)
                yield ln._ln_bwd_kernel, arg_type, dict(BLOCK_M=block_m, BLOCK_N=block_n, STORE_DR=store_dr,
                                                        **flags), launch
            yield ln._ln_reduce_kernel, arg_type, dict(HAS_BIAS=True, BLOCK_G=32, BLOCK_N=min(block_n, 256)), {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m uer_ds.kernels.compile_check", description=__doc__.split("\n")[0])
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability x10 (default 90: H100/H200)")
    parser.add_argument("--quick", action="store_true",
                        help="bf16, head dim 64, every mask and dropout on: the riskiest variants")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("compile_check: unset TRITON_INTERPRET (the interpreter compiles nothing)", file=sys.stderr)
        return 2
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", args.arch, 32)
    count = too_big = 0
    for kernel, arg_type, consts, launch in variants(args.quick):
        start = time.perf_counter()
        signature = {name: "constexpr" if name in consts else arg_type(name) for name in kernel.arg_names}
        compiled = triton.compile(ASTSource(kernel, signature, constexprs=consts), target=target,
                                  options={"num_warps": launch.get("num_warps", 4),
                                           "num_stages": launch.get("num_stages", 3)})
        shown = {k: v for k, v in consts.items() if k not in ("UPCAST",)}
        shared = compiled.metadata.shared
        over = shared > SHARED_LIMIT
        types = "/".join(dict.fromkeys(t for n, t in signature.items() if n in ("Q", "X", "R")))
        print(f"sm_{args.arch} {kernel.__name__} {types} {shown} {launch}: shared {shared} B"
              + (" (over the 227 KB a block may take: it cannot launch)" if over else "")
              + f", {time.perf_counter() - start:.1f} s", flush=True)
        count += 1
        too_big += over
    print(f"compiled {count} kernel variants for sm_{args.arch}"
          + (f"; {too_big} over the shared-memory limit: shrink their tiles" if too_big else ""))
    return 1 if too_big else 0


if __name__ == "__main__":
    sys.exit(main())
