"""Training configs: the optimisation settings (TrainConfig) and their flags."""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence, get_type_hints

from uer_ds.config.model import _help
from uer_ds.config.rules import _choice

SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (UER-py's flag names).  Engine settings (ZeRO stage, offload, precision,
    pipeline buckets) live in the DeepSpeed JSON; these numbers live here only, and the engine writes
    them into the DeepSpeed dict in one audited function."""

    total_steps: int = _help("optimizer steps to train", default=100000)
    batch_size: int = _help("micro-batch per process (UER-py's batch_size); global batch = batch_size x "
                            "accumulation_steps x data-parallel processes", default=32)
    accumulation_steps: int = _help("micro-batches accumulated per optimizer step", default=1)
    learning_rate: float = _help("peak learning rate", default=1e-4)
    warmup: float = _help("fraction of total_steps spent warming up linearly from 0", default=0.1)
    scheduler: str = _help("after warm-up: linear (to 0), cosine (to 0), constant; constant_with_warmup",
                           default="linear")
    weight_decay: float = _help("AdamW weight decay, applied to matrices and embeddings (p.dim() >= 2)",
                                default=0.01)
    adam_beta1: float = _help("AdamW beta1", default=0.9)
    adam_beta2: float = _help("AdamW beta2", default=0.999)
    adam_eps: float = _help("AdamW epsilon", default=1e-6)
    max_grad_norm: float = _help("gradient clipping by global norm (0: off)", default=1.0)
    seed: int = _help("random seed (weights, masking, data order)", default=7)
    report_steps: int = _help("log metrics every N steps", default=100)
    save_checkpoint_steps: int = _help("save a checkpoint every N steps (and at the end)", default=10000)

    def __post_init__(self) -> None:
        for key in ("total_steps", "batch_size", "accumulation_steps", "report_steps", "save_checkpoint_steps"):
            if getattr(self, key) <= 0:
                raise ValueError(f"--{key} has value {getattr(self, key)}: must be positive")
        if self.learning_rate <= 0:
            raise ValueError(f"--learning_rate has value {self.learning_rate}: must be positive")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"--warmup has value {self.warmup}: must be a fraction in [0, 1)")
        _choice("scheduler", self.scheduler, SCHEDULERS)
        for key in ("weight_decay", "max_grad_norm"):
            if getattr(self, key) < 0:
                raise ValueError(f"--{key} has value {getattr(self, key)}: must be >= 0")
        for key in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ValueError(f"--{key} has value {getattr(self, key)}: must be in [0, 1)")

    @property
    def warmup_steps(self) -> int:
        return int(self.total_steps * self.warmup)


def add_train_config_arguments(parser: argparse.ArgumentParser, exclude: Sequence[str] = (), **defaults: Any) -> None:
    """One `--<field>` per TrainConfig field; `defaults` changes a default (fine-tuning's lr, say);
    `exclude` names fields the command sets itself (fine-tuning derives total_steps from epochs)."""
    group = parser.add_argument_group("training")
    hints = get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in exclude:
            continue
        default = defaults.get(f.name, f.default)
        choices = SCHEDULERS if f.name == "scheduler" else None
        group.add_argument(f"--{f.name}", type=hints[f.name], default=default, choices=choices,
                           help=f"{f.metadata['help']} (default {default})")
    from uer_ds.compat import add_flag_aliases

    add_flag_aliases(parser, "train")  # UER-py's --beta1 / --beta2


def train_config_from_args(args: argparse.Namespace, **values: Any) -> TrainConfig:
    """The TrainConfig of the flags; `values` gives the fields the command excluded from its flags."""
    return TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                          if f.name not in values}, **values)


__all__ = ["SCHEDULERS", "TrainConfig", "add_train_config_arguments", "train_config_from_args"]
