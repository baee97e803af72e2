"""Encoder registry (UER-py's names).

An encoder class may say what each position sees, for config validation of the targets: `causal =
True` (position t sees positions <= t: serves `lm`), False (sees both sides), or None / absent (the
config's `mask` decides, as for the transformer); `bidirectional = True` when the hidden state's two
halves are a forward and a backward direction (serves `bilm`).
"""
from uer_ds.models.encoders.attn import AttnEncoder
from uer_ds.models.encoders.cnn import CnnEncoder, CrnnEncoder, RcnnEncoder
from uer_ds.models.encoders.dual import DualEncoder
from uer_ds.models.encoders.gatedcnn import GatedcnnEncoder
from uer_ds.models.encoders.rnn import BigruEncoder, BilstmEncoder, GruEncoder, LstmEncoder
from uer_ds.models.encoders.synt import SYNTHESIZERS, SyntEncoder
from uer_ds.models.encoders.transformer import TransformerEncoder, TransformerLayer

ENCODERS = {
    "transformer": TransformerEncoder,
    "lstm": LstmEncoder,
    "gru": GruEncoder,
    "bilstm": BilstmEncoder,
    "bigru": BigruEncoder,
    "gatedcnn": GatedcnnEncoder,
    "cnn": CnnEncoder,
    "rcnn": RcnnEncoder,
    "crnn": CrnnEncoder,
    "attn": AttnEncoder,
    "synt": SyntEncoder,
    "dual": DualEncoder,
}

__all__ = ["ENCODERS", "SYNTHESIZERS", "TransformerEncoder", "TransformerLayer"]
