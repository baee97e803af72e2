"""Encoder registry (UER-py's names)."""
from uer_ds.models.encoders.dual import DualEncoder
from uer_ds.models.encoders.gatedcnn import GatedcnnEncoder
from uer_ds.models.encoders.rnn import BigruEncoder, BilstmEncoder, GruEncoder, LstmEncoder
from uer_ds.models.encoders.transformer import TransformerEncoder, TransformerLayer

ENCODERS = {
    "transformer": TransformerEncoder,
    "lstm": LstmEncoder,
    "gru": GruEncoder,
    "bilstm": BilstmEncoder,
    "bigru": BigruEncoder,
    "gatedcnn": GatedcnnEncoder,
    "dual": DualEncoder,
}

__all__ = ["ENCODERS", "TransformerEncoder", "TransformerLayer"]
