"""The only importer of deepspeed: ZeRO/offload/pipeline engines, DeepSpeed configs, checkpoints,
export, memory planning."""
import os

import torch

if "DS_ACCELERATOR" not in os.environ and not torch.cuda.is_available():
    os.environ["DS_ACCELERATOR"] = "cpu"  # DeepSpeed would guess the same, with a warning per process

from uer_ds.engine import checkpoint, dist
from uer_ds.engine.ds_config import build_ds_config, load_ds_config
from uer_ds.engine.engine import Engine, build_engine, describe

__all__ = ["Engine", "build_ds_config", "build_engine", "checkpoint", "describe", "dist", "load_ds_config"]
