"""Activation checkpointing, applied to a built model from outside it (as torchtitan's apply_ac): the
model code only computes; which layers recompute their activations in the backward is decided here.

Each layer of a `RECOMPUTED` class (uer_ds.models.layer_list: the transformer layers) gets its entry
points (`forward`, and `forward_packed` for the unpadded path) wrapped: in training mode the call runs
under torch.utils.checkpoint (non-reentrant), which keeps only the layer's inputs and replays the
forward in the backward with the saved RNG state (so dropout draws the same masks); in eval mode the
plain call.  The wrapper replaces no module, so parameter names, state_dict keys and checkpoints are
those of the plain model.  (The pipeline engine recomputes its stages itself: engine/pipeline.py.)
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from torch import nn
from torch.utils.checkpoint import checkpoint

from uer_ds.models.layer_list import RECOMPUTED

ENTRY_POINTS = ("forward", "forward_packed")


def _recomputed(method: Callable, module: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """`method(module, *args, **kwargs)`, recomputed in the backward while the module trains."""
    if module.training:
        return checkpoint(method, module, *args, use_reentrant=False, **kwargs)
    return method(module, *args, **kwargs)


def apply_activation_checkpointing(model: nn.Module) -> int:
    """Recompute each RECOMPUTED layer of `model` in the backward; returns how many layers (a layer
    shared by several positions, as ALBERT's, counts once).  Numerics are unchanged: only memory."""
    count = 0
    for module in model.modules():
        if isinstance(module, RECOMPUTED):
            for name in ENTRY_POINTS:
                method = getattr(type(module), name, None)
                if method is not None:
                    # a partial of the class's function and the module: deep copies and pickles follow the module
                    setattr(module, name, functools.partial(_recomputed, method, module))
            count += 1
    return count


__all__ = ["apply_activation_checkpointing"]
