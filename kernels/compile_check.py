"""Compile the kernels for an NVIDIA GPU on a machine without one: `python -m uer_ds.kernels.compile_check`.

The interpreter runs the kernels' arithmetic on CPU but not Triton's compiler, whose rules it does
not enforce (types that must agree across a runtime `if`, tile shapes tl.dot accepts, shared memory
per config).  Triton's wheel carries ptxas, so `triton.compile` can lower every kernel variant the
launchers use to a cubin for a given architecture (default sm_90, H100/H200) with no GPU present;
this reports each variant's shared memory and fails on the first that does not compile.

Run it where TRITON_INTERPRET is unset (the kernels must be imported as compiled functions).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, Iterator

ATTN_POINTERS = {"Q", "K", "V", "O", "DO", "DQ", "DK", "DV"}


def _attn_type(dtype: str) -> Callable[[str], str]:
    def arg_type(name: str) -> str:
        if name in ATTN_POINTERS:
            return f"*{dtype}"
        if name in ("LSE", "DELTA"):
            return "*fp32"
        if name in ("KPM", "KEEP"):
            return "*i8"
        if name in ("KV_LO", "KV_HI"):
            return "*i32"
        if name in ("qk_scale", "sm_scale", "dropout_p"):
            return "fp32"
        return "i32"
    return arg_type


def _ln_type(dtype: str) -> Callable[[str], str]:
    def arg_type(name: str) -> str:
        if name in ("X", "R", "Y", "DY", "DX", "W", "B"):
            return f"*{dtype}"
        if name in ("Mean", "Rstd", "DW", "DB"):
            return "*fp32"
        return "fp32" if name == "eps" else "i32"
    return arg_type


def variants(quick: bool) -> Iterator[tuple[object, Callable[[str], str], dict, dict]]:
    """(jit function, argument types, constexprs, launch options) for what the GPU launchers use."""
    from uer_ds.kernels import flash_attention as fa
    from uer_ds.kernels import fused_layer_norm as ln

    dtypes = ["bf16"] if quick else ["bf16", "fp16", "fp32"]
    head_dims = [64] if quick else [32, 64, 128]
    flag_sets = [dict(HAS_KPM=True, CAUSAL=True, DROPOUT=True, EVEN_M=False, EVEN_N=False)]
    if not quick:
        flag_sets.insert(0, dict(HAS_KPM=False, CAUSAL=False, DROPOUT=False, EVEN_M=True, EVEN_N=True))
    for dtype in dtypes:
        precision = "ieee" if dtype == "fp32" else "tf32"
        for d in head_dims:
            for flags in flag_sets:
                for kernel, backward in ((fa._attn_fwd_kernel, False), (fa._attn_bwd_dkdv_kernel, True),
                                         (fa._attn_bwd_dq_kernel, True)):
                    block_m, block_n, launch = fa._gpu_tiles(d, dtype == "fp32", backward)
                    consts = dict(HEAD_D=d, BLOCK_M=block_m, BLOCK_N=block_n, UPCAST=False,
                                  DOT_PRECISION=precision, **flags)
                    yield kernel, _attn_type(dtype), consts, launch
            yield fa._attn_bwd_preprocess_kernel, _attn_type(dtype), dict(HEAD_D=d, BLOCK_M=64), {}
        for n in ([8192] if quick else [128, 1024, 8192]):
            for kernel in (ln._layer_norm_fwd_kernel, ln._layer_norm_bwd_kernel):
                for residual in ([True] if quick else [False, True]):
                    yield kernel, _ln_type(dtype), dict(HAS_RESIDUAL=residual, BLOCK_M=1, BLOCK_N=n), \
                        ln._gpu_launch(n)
    yield fa._dropout_keep_kernel, _attn_type("fp16"), dict(BLOCK_M=32, BLOCK_N=32), {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m uer_ds.kernels.compile_check", description=__doc__.split("\n")[0])
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability x10 (default 90: H100/H200)")
    parser.add_argument("--quick", action="store_true", help="bf16, head dim 64, all masks on: the riskiest variants")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("compile_check: unset TRITON_INTERPRET (the interpreter compiles nothing)", file=sys.stderr)
        return 2
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", args.arch, 32)
    count = 0
    for kernel, arg_type, consts, launch in variants(args.quick):
        start = time.perf_counter()
        signature = {name: "constexpr" if name in consts else arg_type(name) for name in kernel.arg_names}
        compiled = triton.compile(ASTSource(kernel, signature, constexprs=consts), target=target,
                                  options={"num_warps": launch.get("num_warps", 4),
                                           "num_stages": launch.get("num_stages", 3)})
        shown = {k: v for k, v in consts.items() if k not in ("UPCAST",)}
        print(f"sm_{args.arch} {kernel.__name__} {shown}: shared {compiled.metadata.shared} B, "
              f"{time.perf_counter() - start:.1f} s", flush=True)
        count += 1
    print(f"compiled {count} kernel variants for sm_{args.arch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
