"""All model registries in one import, as {name: implementation} (each dict lives with its kind; the
names, and what config validation knows of them, live in uer_ds.registry, below the config)."""
from uer_ds import registry
from uer_ds.data.registry import DATA_PROCESSORS
from uer_ds.models.embeddings import EMBEDDINGS
from uer_ds.models.encoders import ENCODERS, SYNTHESIZERS
from uer_ds.models.layers.activations import ACTIVATIONS
from uer_ds.models.targets import TARGETS

SUBENCODERS = registry.implementations(registry.SUBENCODERS)

__all__ = ["ACTIVATIONS", "DATA_PROCESSORS", "EMBEDDINGS", "ENCODERS", "SUBENCODERS", "SYNTHESIZERS", "TARGETS"]
