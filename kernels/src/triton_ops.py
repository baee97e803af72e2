"""The Triton ops behind the model's `kernels` switch (imported by uer_ds.models.layers.dispatch).

`layer_norm`, `attention`, `varlen_attention` and `bias_dropout_add_layer_norm` have exactly the
signatures of `uer_ds.kernels.reference`'s and are autograd-capable.  Importing this module imports
Triton and decorates the kernels: on CPU set TRITON_INTERPRET=1 before it is first imported (see
kernels/src/utils.py).
"""
from uer_ds.kernels.flash_attention import attention
from uer_ds.kernels.fused_layer_norm import bias_dropout_add_layer_norm, layer_norm
from uer_ds.kernels.varlen_flash_attention import varlen_attention

__all__ = ["attention", "bias_dropout_add_layer_norm", "layer_norm", "varlen_attention"]
