"""Every registry of names a model config uses, at the bottom of the import graph.

Each registry is one dict: name -> where its implementation lives ("module:attribute", imported only
when a model is built; `implementations` turns a dict into {name: object}), plus, for the encoders,
what config validation must know of each.  This module imports nothing of uer_ds and no torch, so
`uer_ds.config` validates names and those facts without importing a model module, and every model
module may import the config: imports go one way (tests/test_import_graph.py).  CLI choices, config
validation, `--help` and the model packages' class dicts (`uer_ds.models.encoders.ENCODERS`, ...)
all derive from these keys; a new encoder is one line here and its module.
"""
from __future__ import annotations

import importlib
from typing import Any, Mapping, NamedTuple, Optional


class EncoderEntry(NamedTuple):
    """An encoder: its implementation, and what the config rules and the engine must know of it without
    importing it (capabilities are asked of these fields, never of lists of encoder names)."""

    where: str                     # "module:Class"
    causal: Optional[bool]         # True: position t sees positions <= t (serves lm); False: both sides;
    #                                None: the config's `mask` decides (transformer, attn, synt)
    bidirectional: bool = False    # the hidden state's halves are a forward and a backward direction (bilm)
    convolutional: bool = False    # convolutions over positions: needs kernel_size
    recurrent: bool = False        # torch's LSTM/GRU inside (torch.compile needs dynamo's allow_rnn)
    attention_heads: bool = False  # attention without an emb -> hidden projection: heads_num divides
    #                                hidden_size, emb_size equals it (attn, synt; the transformer has its own)


_ENC = "uer_ds.models.encoders"
EMBEDDINGS: dict[str, str] = {
    "word": "uer_ds.models.embeddings.parts:WordEmbedding",
    "pos": "uer_ds.models.embeddings.parts:PosEmbedding",
    "seg": "uer_ds.models.embeddings.parts:SegEmbedding",
    "sinusoidalpos": "uer_ds.models.embeddings.parts:SinusoidalPosEmbedding",
    "task": "uer_ds.models.embeddings.task:TaskEmbedding",  # ERNIE 2.0's task embedding: the batch's task id
    "dual": "uer_ds.models.embeddings.embedding:DualEmbedding",  # a whole embedding: one Embedding per stream
}
ENCODERS: dict[str, EncoderEntry] = {
    "transformer": EncoderEntry(f"{_ENC}.transformer:TransformerEncoder", None),
    "lstm": EncoderEntry(f"{_ENC}.rnn:LstmEncoder", True, recurrent=True),
    "gru": EncoderEntry(f"{_ENC}.rnn:GruEncoder", True, recurrent=True),
    "bilstm": EncoderEntry(f"{_ENC}.rnn:BilstmEncoder", False, bidirectional=True, recurrent=True),
    "bigru": EncoderEntry(f"{_ENC}.rnn:BigruEncoder", False, bidirectional=True, recurrent=True),
    "gatedcnn": EncoderEntry(f"{_ENC}.gatedcnn:GatedcnnEncoder", True, convolutional=True),
    "cnn": EncoderEntry(f"{_ENC}.cnn:CnnEncoder", True, convolutional=True),
    "rcnn": EncoderEntry(f"{_ENC}.cnn:RcnnEncoder", True, convolutional=True, recurrent=True),
    "crnn": EncoderEntry(f"{_ENC}.cnn:CrnnEncoder", True, convolutional=True, recurrent=True),
    "attn": EncoderEntry(f"{_ENC}.attn:AttnEncoder", None, attention_heads=True),
    "synt": EncoderEntry(f"{_ENC}.synt:SyntEncoder", None, attention_heads=True),
    "dual": EncoderEntry(f"{_ENC}.dual:DualEncoder", False),  # a siamese body for the classifier, never a target's
}
TARGETS: dict[str, str] = {
    "mlm": "uer_ds.models.targets.mlm:MlmTarget",
    "sp": "uer_ds.models.targets.sp:SpTarget",
    "lm": "uer_ds.models.targets.lm:LmTarget",
    "bilm": "uer_ds.models.targets.lm:BilmTarget",
    "cls": "uer_ds.models.targets.cls:ClsTarget",
    "s2s": "uer_ds.models.targets.s2s:S2sTarget",
    # ERNIE 2.0's tasks (uer_ds.models.targets.ernie)
    "capitalization": "uer_ds.models.targets.ernie:CapitalizationTarget",
    "token_document": "uer_ds.models.targets.ernie:TokenDocumentTarget",
    "sentence_reorder": "uer_ds.models.targets.ernie:SentenceReorderTarget",
    "sentence_distance": "uer_ds.models.targets.ernie:SentenceDistanceTarget",
    "discourse": "uer_ds.models.targets.ernie:DiscourseTarget",
    "ir_relevance": "uer_ds.models.targets.ernie:IrRelevanceTarget",
}
ACTIVATIONS: dict[str, str] = {
    "gelu": "torch.nn.functional:gelu",
    "gelu_fast": "uer_ds.models.layers.activations:gelu_fast",  # the tanh approximation (GPT-2's gelu_new)
    "relu": "torch.nn.functional:relu",
    "silu": "torch.nn.functional:silu",
    "tanh": "torch:tanh",
    "linear": "uer_ds.models.layers.activations:linear",
}
SYNTHESIZERS: dict[str, str] = {
    "dense": "uer_ds.models.encoders.synt:DenseSynthesizer",
    "random": "uer_ds.models.encoders.synt:RandomSynthesizer",
}
SUBENCODERS: dict[str, str] = {
    "avg": "uer_ds.models.embeddings.subword:AvgSubencoder",
    "lstm": "uer_ds.models.embeddings.subword:LstmSubencoder",
    "gru": "uer_ds.models.embeddings.subword:GruSubencoder",
    "cnn": "uer_ds.models.embeddings.subword:CnnSubencoder",
}
SUBWORD_TYPES = ("none", "char")  # word features from the word's characters (uer_ds.tokenizers.subword)

# Data processors: what each pre-training data layout feeds to which targets (`uer-ds preprocess
# --data_processor`, `ModelConfig.data_processor`; the instance builders are uer_ds.data.instances.BUILDERS).
DATA_PROCESSORS: dict[str, tuple[str, ...]] = {
    "bert": ("mlm", "sp"),     # MLM + next-sentence prediction
    "albert": ("mlm", "sp"),   # MLM + sentence-order prediction (same head, different pairs)
    "mlm": ("mlm",),
    "lm": ("lm",),
    "bilm": ("bilm",),
    "cls": ("cls",),
    "cls_mlm": ("cls", "mlm"),  # UER-py's cls_mlm: a labelled line, its label and its masked tokens
    "s2s": ("s2s",),           # source<TAB>target lines: an LSTM decoder reads the encoder (UER-py's s2s)
    # ERNIE 2.0's tasks (uer_ds/data/ernie.py): each feeds the target of its name
    "capitalization": ("capitalization",),
    "token_document": ("token_document",),
    "sentence_reorder": ("sentence_reorder",),
    "sentence_distance": ("sentence_distance",),
    "discourse": ("discourse",),
    "ir_relevance": ("ir_relevance",),
}


def locate(where: str) -> Any:
    """The object a registry names ("module:attribute"), importing its module."""
    module, _, attribute = where.partition(":")
    return getattr(importlib.import_module(module), attribute)


def implementations(registry: Mapping[str, Any]) -> dict[str, Any]:
    """{name: implementation} of a registry (its modules imported): what a model is built from."""
    return {name: locate(entry.where if isinstance(entry, EncoderEntry) else entry)
            for name, entry in registry.items()}


__all__ = ["ACTIVATIONS", "DATA_PROCESSORS", "EMBEDDINGS", "ENCODERS", "SUBENCODERS", "SUBWORD_TYPES",
           "SYNTHESIZERS", "TARGETS", "EncoderEntry", "implementations", "locate"]
