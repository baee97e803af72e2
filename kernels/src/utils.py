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
import threading
from typing import Any, Callable, Iterable

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


# ---- registration as torch operators -------------------------------------------------------------
def kernel_op(name: str) -> Callable[[Callable], Any]:
    """Register a launcher as the operator `uer_ds::<name>` (decorator), so that torch.compile traces it.

    On a GPU this is `torch.library.triton_op`: torch.compile (fullgraph) and CUDA graphs see the
    Triton launches inside (the launcher calls them through `launch`, i.e. `wrap_triton`) and inductor
    schedules them with the rest of the graph.  Under Triton's interpreter (TRITON_INTERPRET=1, CPU) a
    kernel is not a JITFunction that `wrap_triton` can trace, so the launcher becomes an opaque
    `torch.library.custom_op` whose fake (shape) implementation is the launcher itself with its
    launches skipped: compiled graphs on CPU call the op, eager calls run it.  Either way the op has
    no view or in-place semantics: every output is a new tensor.
    """
    from torch.library import custom_op, triton_op

    def register(fn: Callable) -> Any:
        qualified = f"uer_ds::{name}"
        if interpreting():
            op = custom_op(qualified, fn, mutates_args=())
            op.register_fake(fn)
        else:
            op = triton_op(qualified, fn, mutates_args=())
        op.launcher = fn  # the plain function (tests count the torch ops it issues around its launches)
        return op
    return register


def launch(kernel: Any, grid: Any, *args: Any, **kwargs: Any) -> None:
    """kernel[grid](*args, **kwargs) from inside a `kernel_op` launcher.

    On real tensors (eager calls) the kernel launches directly.  On fake or functional tensors (the
    operator traced by torch.compile) a GPU kernel goes through `torch.library.wrap_triton`, which puts
    it in the graph; an interpreted kernel (CPU) is skipped there, the operator being opaque.
    """
    from torch._subclasses.fake_tensor import is_fake

    first = next((a for a in args if isinstance(a, torch.Tensor)), None)
    interpreted = is_interpreted(kernel)
    if first is None or not is_fake(first):
        if interpreted:
            with _interpreting_launch():
                kernel[grid](*args, **kwargs)
        else:
            kernel[grid](*args, **kwargs)
    elif not interpreted:
        from torch.library import wrap_triton

        wrap_triton(kernel)[grid](*args, **kwargs)


_LAUNCH = threading.local()


@contextlib.contextmanager
def _interpreting_launch():
    _LAUNCH.depth = getattr(_LAUNCH, "depth", 0) + 1
    try:
        yield
    finally:
        _LAUNCH.depth -= 1


def in_interpreted_launch() -> bool:
    """True while Triton's interpreter runs a kernel (on the CPU): the torch ops and host copies it makes
    then are the interpreter's own (on a GPU the launch is one kernel), which op counters leave out."""
    return getattr(_LAUNCH, "depth", 0) > 0


def eager_function(launcher: Callable, setup_context: Callable, backward: Callable) -> type:
    """A torch.autograd.Function running `launcher` (a kernel operator's plain function) with the
    operator's own setup_context and a backward that calls the backward launcher directly.

    Eager calls take it instead of the registered operator: the operator's dispatch (custom-op
    checks, the autograd wrapper around an autograd wrapper) costs the host ~100-170 us per call on
    the CPU, where this costs ~15-25 us; torch.compile takes the operator (`compiling()`), so the
    compiled graph holds the kernels.  The first output carries the gradient, the others (statistics)
    are marked non-differentiable.
    """

    class EagerKernel(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *inputs):
            outputs = launcher(*inputs)
            setup_context(ctx, inputs, outputs)
            ctx.mark_non_differentiable(*outputs[1:])
            return outputs

        @staticmethod
        def backward(ctx, *grads):
            return backward(ctx, *grads)

    EagerKernel.__name__ = EagerKernel.__qualname__ = f"Eager_{getattr(launcher, '__name__', 'kernel')}"
    return EagerKernel


def compiling() -> bool:
    """True while torch.compile traces (take the registered operator), False in eager calls."""
    return torch.compiler.is_compiling()


def dropout_seed(device: torch.device) -> torch.Tensor:
    """(1,) int64 Philox seed for one kernel call, drawn on `device` from torch's generator.

    A device tensor, never read by the host: CUDA graphs capture the draw (torch's generator is
    graph-safe) and torch.compile traces it; `torch.manual_seed` makes runs repeat, and activation
    checkpointing's replay draws the same seed again (it restores the generator).  One torch op.
    """
    return torch.randint(0, 2 ** 62, (1,), device=device, dtype=torch.int64)


def call_seed(dropout_p: float, seed: Any, device: torch.device) -> Any:
    """The seed one kernel call reads: None without dropout; else `seed` as a tensor (`as_seed`), or one
    drawn on the device (`dropout_seed`) when none is given."""
    if dropout_p <= 0:
        return None
    return as_seed(seed, device) if seed is not None else dropout_seed(device)


def as_seed(seed: Any, device: torch.device) -> torch.Tensor:
    """A seed given as a Python int (tests: a known mask) or a (1,) int64 tensor, as the tensor the kernels read."""
    if isinstance(seed, torch.Tensor):
        return seed
    return torch.tensor([int(seed)], dtype=torch.int64, device=device)


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for ints.  (triton.cdiv is a jit function: called from Python it costs ~10 us.)"""
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """The least power of two >= n (1 for n <= 1), in plain Python (see cdiv)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()
