"""Encoder registry (UER-py's names): the classes named by uer_ds.registry.ENCODERS, which also says
what each position of each encoder sees (for config validation of the targets)."""
from uer_ds import registry
from uer_ds.models.encoders.transformer import TransformerEncoder, TransformerLayer

ENCODERS = registry.implementations(registry.ENCODERS)  # name -> class
SYNTHESIZERS = registry.implementations(registry.SYNTHESIZERS)

__all__ = ["ENCODERS", "SYNTHESIZERS", "TransformerEncoder", "TransformerLayer"]
