"""Building blocks; LayerNorm and the attention core are the kernel slots."""
from uer_ds.models.layers.activations import ACTIVATIONS
from uer_ds.models.layers.attention import MultiHeadedAttention
from uer_ds.models.layers.dispatch import kernel_ops
from uer_ds.models.layers.feed_forward import PositionwiseFeedForward
from uer_ds.models.layers.layer_norm import LayerNorm

__all__ = ["ACTIVATIONS", "LayerNorm", "MultiHeadedAttention", "PositionwiseFeedForward", "kernel_ops"]
