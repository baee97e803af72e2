"""Kernels for the hot path (installed as the package `uer_ds.kernels`).

`reference` holds the pure-PyTorch implementations; the Triton kernels (issue #5) sit beside them,
one module per op, and are picked by the model's `kernels` switch (auto|torch|triton).
"""
from uer_ds.kernels import reference

__all__ = ["reference"]
