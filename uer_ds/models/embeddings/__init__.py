"""Embedding registry: UER-py's names for the parts of the embedding sum."""
from uer_ds.models.embeddings.embedding import DualEmbedding, Embedding
from uer_ds.models.embeddings.parts import PosEmbedding, SegEmbedding, SinusoidalPosEmbedding, WordEmbedding
from uer_ds.models.embeddings.task import TaskEmbedding

EMBEDDINGS = {
    "word": WordEmbedding,
    "pos": PosEmbedding,
    "seg": SegEmbedding,
    "sinusoidalpos": SinusoidalPosEmbedding,
    "task": TaskEmbedding,     # ERNIE 2.0's task embedding (issue 27): the batch's task id, tgt["task_type"]
    "dual": DualEmbedding,  # a whole embedding of its own: one Embedding per stream
}


def build_embedding(cfg):
    """The model's embedding slot for `cfg`."""
    return DualEmbedding(cfg) if tuple(cfg.embedding) == ("dual",) else Embedding(cfg)


__all__ = ["EMBEDDINGS", "Embedding", "DualEmbedding", "build_embedding"]
