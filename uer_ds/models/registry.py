"""All registries in one import, for config validation and CLI choices (each dict lives with its kind)."""
from uer_ds.data.registry import DATA_PROCESSORS
from uer_ds.models.embeddings import EMBEDDINGS
from uer_ds.models.embeddings.subword import SUBENCODERS
from uer_ds.models.encoders import ENCODERS, SYNTHESIZERS
from uer_ds.models.layers.activations import ACTIVATIONS
from uer_ds.models.targets import TARGETS

__all__ = ["ACTIVATIONS", "DATA_PROCESSORS", "EMBEDDINGS", "ENCODERS", "SUBENCODERS", "SYNTHESIZERS", "TARGETS"]
