"""Target registry (UER-py's names); every target returns a TargetResult."""
from uer_ds.models.targets.base import IGNORE_INDEX, TargetResult
from uer_ds.models.targets.cls import ClsTarget, pool
from uer_ds.models.targets.ernie import ERNIE_TARGETS
from uer_ds.models.targets.lm import BilmTarget, LmTarget
from uer_ds.models.targets.mlm import MlmTarget
from uer_ds.models.targets.s2s import S2sTarget
from uer_ds.models.targets.sp import SpTarget

TARGETS = {
    "mlm": MlmTarget,
    "sp": SpTarget,
    "lm": LmTarget,
    "bilm": BilmTarget,
    "cls": ClsTarget,
    "s2s": S2sTarget,
    **ERNIE_TARGETS,  # ERNIE 2.0's tasks (issue 27): capitalization, token_document, sentence_reorder, ...
}

__all__ = ["IGNORE_INDEX", "TARGETS", "TargetResult", "pool"]
