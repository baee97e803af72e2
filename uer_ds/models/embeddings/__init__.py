"""Embedding registry: UER-py's names for the parts of the embedding sum (uer_ds.registry.EMBEDDINGS)."""
from uer_ds import registry
from uer_ds.models.embeddings.embedding import DualEmbedding, Embedding

EMBEDDINGS = registry.implementations(registry.EMBEDDINGS)  # name -> class


def build_embedding(cfg):
    """The model's embedding slot for `cfg`."""
    return DualEmbedding(cfg) if tuple(cfg.embedding) == ("dual",) else Embedding(cfg)


__all__ = ["EMBEDDINGS", "Embedding", "DualEmbedding", "build_embedding"]
