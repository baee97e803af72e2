"""Parameter counts by component, for `uer-ds model summary`."""
from __future__ import annotations

from torch import nn

from uer_ds.models.model import Model


def _count(module: nn.Module, seen: set[int]) -> int:
    total = 0
    for param in module.parameters():
        if id(param) not in seen:
            seen.add(id(param))
            total += param.numel()
    return total


def parameter_table(model: Model) -> list[tuple[str, int]]:
    """[(component, parameters)]: each embedding part, the encoder (and one layer), each target,
    then the total.  A tied matrix counts once, where it first appears (the word embedding)."""
    seen: set[int] = set()
    rows: list[tuple[str, int]] = []
    for name, child in model.embedding.named_children():
        if any(True for _ in child.parameters()):
            rows.append((f"embedding.{name}", _count(child, seen)))
    rows.append(("encoder", _count(model.encoder, set(seen))))
    transformer = getattr(model.encoder, "transformer", None)
    if transformer is not None:
        rows.append((f"  one transformer layer (x{len(transformer)} stored)", _count(transformer[0], set(seen))))
    _count(model.encoder, seen)
    for name, head in model.target.items():
        rows.append((f"target.{name}", _count(head, seen)))
    rows.append(("total", sum(p.numel() for p in model.parameters())))
    return rows
