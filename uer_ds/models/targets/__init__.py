"""Target registry (UER-py's names, uer_ds.registry.TARGETS); every target returns a TargetResult."""
from uer_ds import registry
from uer_ds.models.targets.base import IGNORE_INDEX, TargetResult
from uer_ds.models.targets.cls import pool

TARGETS = registry.implementations(registry.TARGETS)  # name -> class

__all__ = ["IGNORE_INDEX", "TARGETS", "TargetResult", "pool"]
