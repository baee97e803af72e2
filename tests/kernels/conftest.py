"""Kernel tests: Triton's interpreter on CPU (TRITON_INTERPRET=1), compiled kernels where CUDA is present.

Triton reads TRITON_INTERPRET when `triton` and each `@triton.jit` function are first imported, so
this file sets it, imports Triton and the kernels, and then puts the environment back: tests of
other directories collected in the same session (and the processes they start) see the environment
they started with.  An autouse fixture sets the variable again around each kernel test, because the
model's switch (dispatch.py) and Triton's lazy imports read it at call time.

The tolerance table and the comparison helpers live in kernel_helpers.py (a plain module: two
files named conftest cannot both be imported by name).
"""
from __future__ import annotations

import os
import sys

import pytest
import torch

INTERPRET = not torch.cuda.is_available()
_BROKEN = None

if INTERPRET and "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
    _BROKEN = ("tests/kernels: triton was imported (by a module collected earlier) before TRITON_INTERPRET=1 "
               "could be set, so the kernels cannot run in Triton's interpreter in this process; run "
               "`pytest tests/kernels` on its own, or start pytest with TRITON_INTERPRET=1 in the environment")
elif INTERPRET:
    _before = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton.experimental.gluon  # noqa: F401  (imported lazily by the interpreter's first launch)

        import uer_ds.kernels.triton_ops  # noqa: F401  (decorates the kernels as interpreted functions)
    finally:
        if _before is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = _before


@pytest.fixture(autouse=True)
def _triton_interpreter(monkeypatch):
    if _BROKEN:
        pytest.fail(_BROKEN)
    if INTERPRET:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    yield
