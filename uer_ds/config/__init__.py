"""Configuration, one module per job; everything is imported from here (`from uer_ds.config import ...`).

- `model`     ModelConfig, the typed, frozen dataclass of UER-py's JSON model configs (reading, coercion,
              where a value came from), the shipped configs;
- `rules`     what a model config must satisfy, and the one place that consults the registries
              (`uer_ds.registry`: legal names, and the encoder facts validation needs);
- `flags`     the model-config flags of the commands and the config they give;
- `training`  TrainConfig (optimisation settings) and its flags.

Imports go one way: rules <- model <- flags; rules, model <- training.
"""
from uer_ds.config.engine import EngineConfig, OutputConfig
from uer_ds.config.flags import add_model_config_arguments, model_config_from_args, model_config_overrides
from uer_ds.config.model import (_FIELDS, _HINTS, SHIPPED_CONFIG_DIR, UER_DEFAULT_CONFIG, ConfigNote,
                                 ModelConfig, _coerce, _located, resolve_config_path, shipped_config_names)
from uer_ds.config.rules import (KERNEL_CHOICES, LAYERNORM_POSITIONS, MASKS, POOLINGS, VOCAB_OUTPUT_TARGETS,
                                 ConfigError, is_causal)
from uer_ds.config.training import SCHEDULERS, TrainConfig, add_train_config_arguments, train_config_from_args

__all__ = ["EngineConfig", "OutputConfig", "KERNEL_CHOICES", "LAYERNORM_POSITIONS", "MASKS", "POOLINGS", "SCHEDULERS", "SHIPPED_CONFIG_DIR",
           "UER_DEFAULT_CONFIG", "VOCAB_OUTPUT_TARGETS", "ConfigError", "ConfigNote", "ModelConfig",
           "TrainConfig",
           "add_model_config_arguments", "add_train_config_arguments", "is_causal", "model_config_from_args",
           "model_config_overrides", "resolve_config_path", "shipped_config_names", "train_config_from_args"]
