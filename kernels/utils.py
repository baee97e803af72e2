"""What every Triton op here needs before it launches: where it may run, and clear errors when not.

Triton decides at *import* time whether `@triton.jit` makes a compiled or an interpreted function
(TRITON_INTERPRET=1, read when the decorator runs), so a kernel module imported without the
variable cannot later run on CPU tensors.  `check_launchable` turns that and the other ways a launch
would fail deep inside Triton into one line naming the op, the value and the rule.
"""
from __future__ import annotations

import contextlib
import functools
import os
from typing import Iterable

import torch

# The dtypes the kernels take; they accumulate in fp32 whatever the input.
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def interpreting() -> bool:
    """True when TRITON_INTERPRET=1 (the kernels then run on CPU through Triton's interpreter)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def is_interpreted(kernel: object) -> bool:
    """Whether a jit function was made by the interpreter (its module imported with TRITON_INTERPRET=1)."""
    return type(kernel).__name__ == "InterpretedFunction"


def check_launchable(op: str, kernel: object, tensors: Iterable[torch.Tensor]) -> torch.device:
    """The one device all `tensors` live on, or ValueError/RuntimeError saying why `op` cannot run there."""
    tensors = list(tensors)
    device = tensors[0].device
    for t in tensors[1:]:
        if t.device != device:
            raise ValueError(f"{op}: tensors on different devices ({device} and {t.device}); put them on one")
    if device.type == "cuda":
        return device
    if not is_interpreted(kernel):
        hint = ("TRITON_INTERPRET=1 was set after the kernels were imported; set it before start-up"
                if interpreting() else "set TRITON_INTERPRET=1 before start-up to run them on CPU (slowly)")
        raise RuntimeError(f"{op}: the Triton kernels need CUDA tensors (got device {device}); {hint}, "
                           "or use the PyTorch reference (kernels='torch' or 'auto')")
    return device


def check_dtype(op: str, name: str, t: torch.Tensor) -> None:
    if t.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{op}: {name} has dtype {t.dtype}: it must be one of float32, float16, bfloat16")


def cuda_device_guard(device: torch.device):
    """Launch on the tensors' GPU, not on whichever GPU is current (a no-op on CPU and when that GPU is
    already current: the usual case, and a device switch costs microseconds on every launch)."""
    if device.type == "cuda" and device.index is not None and device.index != torch.cuda.current_device():
        return torch.cuda.device(device)
    return contextlib.nullcontext()


@functools.lru_cache(maxsize=None)
def multiprocessor_count(index: int) -> int:
    """The GPU's streaming multiprocessors (queried once per device: the query is slow)."""
    return torch.cuda.get_device_properties(index).multi_processor_count
