"""Embedding registry: UER-py's names for the parts of the embedding sum."""
from uer_ds.models.embeddings.embedding import DualEmbedding, Embedding
from uer_ds.models.embeddings.parts import PosEmbedding, SegEmbedding, SinusoidalPosEmbedding, WordEmbedding

EMBEDDINGS = {
    "word": WordEmbedding,
    "pos": PosEmbedding,
    "seg": SegEmbedding,
    "sinusoidalpos": SinusoidalPosEmbedding,
    "dual": DualEmbedding,  # a whole embedding of its own: one Embedding per stream
}


def build_embedding(cfg):
    """The model's embedding slot for `cfg`."""
    return DualEmbedding(cfg) if tuple(cfg.embedding) == ("dual",) else Embedding(cfg)


__all__ = ["EMBEDDINGS", "Embedding", "DualEmbedding", "build_embedding"]
