"""What the kernel tests share: Triton's interpreter set-up, the device, the one per-dtype tolerance
table, and comparison helpers.  Every test module here imports this module FIRST.

Interpreter.  Without CUDA the kernels run on CPU through Triton's interpreter, which Triton selects
when `triton` and each `@triton.jit` function are first imported (TRITON_INTERPRET=1).  Importing
this module sets the variable, imports Triton and the kernels, and puts the environment back, so the
tests of other directories in the same session (and the processes they start) see the environment
they started with; the autouse fixture `triton_interpreter`, imported into each test module, sets it
again around each kernel test, because the model's switch (dispatch.py) and Triton's lazy imports
read it at call time.  (This is not a conftest.py: a second conftest would shadow tests/conftest.py
for the `from conftest import ...` of the other test directories.)
"""
from __future__ import annotations

import os
import sys
from typing import Optional

import pytest
import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: Triton's interpreter
INTERPRET = DEVICE == "cpu"
_BROKEN = None

if INTERPRET and "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1" \
        and "uer_ds.kernels.flash_attention" not in sys.modules:
    _BROKEN = ("tests/kernels: triton was imported (by a module collected earlier) before TRITON_INTERPRET=1 "
               "could be set, so the kernels cannot run in Triton's interpreter in this process; run "
               "`pytest tests/kernels` on its own, or start pytest with TRITON_INTERPRET=1 in the environment")
elif INTERPRET:
    _before = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton.experimental.gluon  # noqa: F401  (imported lazily by the interpreter's first launch)

        import uer_ds.kernels

        uer_ds.kernels.load()  # imports the kernels: decorates them as interpreted functions
    finally:
        if _before is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = _before


@pytest.fixture(autouse=True)
def triton_interpreter(monkeypatch):
    """TRITON_INTERPRET=1 for the duration of one kernel test (on CPU)."""
    if _BROKEN:
        pytest.fail(_BROKEN)
    if INTERPRET:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    yield


# (atol, rtol) against the reference evaluated in float64 on the same (already rounded) inputs, so
# the numbers bound the kernels' own rounding: fp32 accumulation everywhere, outputs rounded to the
# input dtype (the interpreter truncates fp32 -> bf16 instead of rounding: up to 1 ulp, not 1/2).
# Measured worst cases under the interpreter are in docs/gpu-kernels.md; the GPU tests use the same
# table.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float32: (2e-5, 1e-5),
    torch.float16: (4e-3, 4e-3),
    torch.bfloat16: (3e-2, 2e-2),
}
DTYPES = list(TOLERANCES)
DTYPE_IDS = ["fp32", "fp16", "bf16"]


def assert_matches(actual: torch.Tensor, expected: torch.Tensor, what: str,
                   dtype: Optional[torch.dtype] = None) -> float:
    """Compare a kernel result with the float64 reference at the table's tolerance; return max |error|."""
    dtype = dtype or actual.dtype
    atol, rtol = TOLERANCES[dtype]
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {tuple(actual.shape)} != reference {tuple(expected.shape)}")
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    assert torch.isfinite(a).all(), f"{what}: non-finite values"
    torch.testing.assert_close(a, e, atol=atol, rtol=rtol, msg=lambda m: f"{what} ({dtype}): {m}")
    return (a - e).abs().max().item() if a.numel() else 0.0


def leaf(shape, dtype, generator, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    """A random leaf tensor on DEVICE with requires_grad, drawn in fp32 and rounded to dtype."""
    t = torch.randn(shape, generator=generator) * scale + shift
    return t.to(device=DEVICE, dtype=dtype).requires_grad_()


def as_double(*tensors):
    """float64 CPU leaves with the same values (the reference side of a comparison)."""
    return [t.detach().double().cpu().requires_grad_() for t in tensors]


def assert_no_worse_than_torch(actual: torch.Tensor, exact: torch.Tensor, torch_same_dtype: torch.Tensor,
                               what: str, factor: float = 2.0) -> float:
    """GPU rule at real sizes (FlashAttention's own test rule): the kernel's max error against the float64
    result is at most `factor` x PyTorch's own error in the same dtype, plus the table's atol."""
    atol, _ = TOLERANCES[actual.dtype]
    exact = exact.detach().double()
    ours = (actual.detach().double() - exact).abs().max().item()
    theirs = (torch_same_dtype.detach().double() - exact).abs().max().item()
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    assert ours <= factor * theirs + atol, f"{what}: max error {ours:.3g} > {factor} x torch's {theirs:.3g} + {atol}"
    return ours
