"""Kernels for the hot path (installed as the package `uer_ds.kernels`): the one door to them.

- `reference`: the pure-PyTorch implementations (the CPU path, the tests' ground truth, the
  benchmarks' baseline).  Importing this package never imports Triton, so the CPU model path works
  on machines without a GPU (or without Triton).
- The Triton ops, with the references' signatures, differentiable, registered as torch.library
  operators (`uer_ds::...`) so torch.compile traces them: `layer_norm(x, weight, bias, eps=1e-12,
  residual=None)`, `bias_dropout_add_layer_norm(x, bias, residual, weight, ln_bias, eps=1e-12,
  dropout_p=0.0)`, `attention(q, k, v, key_padding_mask=None, causal=False, dropout_p=0.0,
  softmax_scale=None)` and `varlen_attention(q, k, v, cu_seqlens, max_seqlen, causal=False,
  dropout_p=0.0, softmax_scale=None)` (packed (N, H, D) sequences); their modules `FusedLayerNorm`,
  `FlashAttention`, `VarlenFlashAttention`; for tests, each dropout op with an explicit seed
  (`*_with_seed`) and the mask that seed gives (`*_keep_mask`).
  Every caller takes them from here (`uer_ds.kernels.attention`, ...): the name resolves on first use
  (module `__getattr__`), which imports Triton and the kernel module, then stays bound here.  On CPU
  set TRITON_INTERPRET=1 before that.  `load()` resolves them all at once.
- The model picks between the two through its `kernels` switch (uer_ds.models.layers.dispatch, which
  calls `load()` when a model that may take the kernels is built).

The kernel modules (`fused_layer_norm`, `flash_attention`, `varlen_flash_attention`, and
`attention_common`, what the two attention kernels share) are not named after the functions: importing
a submodule sets the package attribute of its name, which would replace a function of that name.
"""
from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

from uer_ds.kernels import reference

# public name -> the kernel module (of this package) that defines it
_DOOR = {
    "layer_norm": "fused_layer_norm",
    "bias_dropout_add_layer_norm": "fused_layer_norm",
    "bias_dropout_add_layer_norm_with_seed": "fused_layer_norm",
    "layer_norm_keep_mask": "fused_layer_norm",
    "FusedLayerNorm": "fused_layer_norm",
    "attention": "flash_attention",
    "attention_with_seed": "flash_attention",
    "FlashAttention": "flash_attention",
    "varlen_attention": "varlen_flash_attention",
    "varlen_attention_with_seed": "varlen_flash_attention",
    "VarlenFlashAttention": "varlen_flash_attention",
    "attention_keep_mask": "attention_common",
    "varlen_attention_keep_mask": "attention_common",
}


def __getattr__(name: str) -> Any:
    """Resolve a public kernel name on first use (PEP 562): import its module, bind the name here."""
    module = _DOOR.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_DOOR))


def load() -> ModuleType:
    """Import the Triton kernels now and bind every public name; returns this package.  ImportError
    where Triton (or a kernel) is unavailable.  Called outside compiled regions, so torch.compile then
    reads plain module attributes."""
    for name in _DOOR:
        __getattr__(name)
    return sys.modules[__name__]


__all__ = ["load", "reference", *_DOOR]
