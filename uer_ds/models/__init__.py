"""Model core: pure PyTorch, single device; never imports deepspeed."""
from uer_ds.models.io import load_model, save_model
from uer_ds.models.model import Model, build_model
from uer_ds.models.targets import IGNORE_INDEX, TargetResult

__all__ = ["IGNORE_INDEX", "Model", "TargetResult", "build_model", "load_model", "save_model"]
