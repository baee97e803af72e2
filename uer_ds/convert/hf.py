"""Hugging Face Transformers <-> uer_ds, as key-mapping tables: bert, roberta, albert, gpt2, ernie.

A family names the HF model type it reads, the prefix of the body inside a model with heads, how HF's
config.json becomes our ModelConfig and back, its table of invertible Rules (see rules.py), and the HF
class each set of targets is written as.  Reading and writing use the same table.

Layout facts the tables encode (checked against transformers' modeling files and with numerics tests):
- BERT token types (n, H) become our segments (3, H): row 0 (padding) copies HF row 0, rows 1-2 are the
  HF rows (a one-row table, as RoBERTa checkpoints have, fills both).  Writing drops row 0.
- RoBERTa positions start at pad_token_id + 1: HF rows [0, offset) are never read by a right-padded
  sequence, so our table is HF's from `offset` on and the reserved rows travel as an extra.
- ALBERT: one shared layer group (num_hidden_groups 1) is our parameter_sharing; one group per layer is
  our unshared stack; embedding_hidden_mapping_in is our encoder.linear.
- GPT-2 stores Conv1D weights as (in, out) and query/key/value fused: transposed and split here.
- Tied output matrices (MLM decoder, lm_head) are written once, as save_pretrained does.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

import torch
from safetensors.torch import save_file

from uer_ds.config import ModelConfig
from uer_ds.convert.rules import EXTRA, Checkpoint, Report, Rule, Tensors, copy, expected_shapes, new_directory, \
    to_ours, to_theirs
from uer_ds.convert.weights import read_weights
from uer_ds.textfile import load_json

PathLike = Union[str, os.PathLike]

# HF activation names -> ours; writing takes the first HF name for ours unless the source's name maps back.
_HF_ACT = {"gelu": "gelu", "gelu_new": "gelu_fast", "gelu_pytorch_tanh": "gelu_fast", "gelu_fast": "gelu_fast",
           "relu": "relu", "silu": "silu", "swish": "silu"}
_OUR_ACT = {"gelu": "gelu", "gelu_fast": "gelu_new", "relu": "relu", "silu": "silu"}


def _act(name: str, source: str) -> str:
    if name not in _HF_ACT:
        raise ValueError(f"{source}: hidden_act '{name}' has no uer_ds equivalent (supported: {', '.join(_HF_ACT)})")
    return _HF_ACT[name]


def _act_out(cfg: ModelConfig, base_name: Any, family: str) -> str:
    if isinstance(base_name, str) and _HF_ACT.get(base_name) == cfg.hidden_act:
        return base_name  # keep the source's spelling (gelu_pytorch_tanh stays so)
    if cfg.hidden_act not in _OUR_ACT:
        raise ValueError(f"cannot write Hugging Face {family}: key 'hidden_act' has value '{cfg.hidden_act}', which "
                         f"has no Hugging Face name (supported: {', '.join(_OUR_ACT)})")
    return _OUR_ACT[cfg.hidden_act]


def _require(cfg: ModelConfig, family: str, **expected: Any) -> None:
    """Raise unless the config has each expected value: the family's architecture cannot hold anything else."""
    for key, want in expected.items():
        value = getattr(cfg, key)
        if (tuple(value) if isinstance(value, tuple) else value) != want:
            raise ValueError(f"cannot write Hugging Face {family}: key '{key}' has value {value!r}, "
                             f"{family} needs {want!r}")


def _type_vocab(hf: dict, source: str) -> int:
    n = hf.get("type_vocab_size", 2)
    if n not in (1, 2):
        raise ValueError(f"{source}: type_vocab_size {n}: uer_ds segments hold 1 or 2 types (plus padding)")
    return n


def _absolute_positions(hf: dict, source: str) -> None:
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{source}: position_embedding_type '{hf['position_embedding_type']}' is not supported")


# ---- pieces shared by the BERT-like families ---------------------------------------------------------
def _segment_rule(key: str, types: int) -> Rule:
    """HF token types (types, H) <-> our segments (3, H): 0 = padding (a copy of HF row 0), 1, 2."""

    def to_ours_(ts: Tensors) -> Tensors:
        (table,) = ts
        return [torch.cat([table[:1], table] + [table[-1:]] * (2 - types), dim=0)]

    def to_theirs_(ts: Tensors) -> Tensors:
        return [ts[0][1:1 + types]]

    return Rule((key,), ("embedding.seg.embedding.weight",), to_ours_, to_theirs_)


def _narrow_heads(cfg: ModelConfig) -> bool:
    """Whether the heads together are narrower than hidden_size (a width-pruned model, `uer-ds prune`)."""
    return cfg.heads_num * cfg.head_size != cfg.hidden_size


def _zero_padded(theirs: str, ours: str, cfg: ModelConfig, dim: int, params: tuple[str, ...]) -> list[Rule]:
    """Rules for a projection of a width-pruned model: our (heads_num * head_size) rows (dim 0) or columns
    (dim 1) <-> Hugging Face's hidden_size, the rows/columns past ours zero.

    transformers 5 has no `pruned_heads` (removed in 5.0; 5.25's BertSelfAttention sizes every head
    hidden_size // num_attention_heads), so a pruned model is written with hidden_size // head_size heads, the
    removed ones' query/key/value rows and output-projection columns zero: a zero output column makes a head's
    contribution exactly zero whatever it attends to, so the logits are the pruned model's."""
    inner = cfg.heads_num * cfg.head_size

    def to_theirs_(ts: Tensors) -> Tensors:
        (t,) = ts
        if t.dim() <= dim:
            return [t]
        pad = [0, 0] * (t.dim() - 1 - dim) + [0, cfg.hidden_size - inner]
        return [torch.nn.functional.pad(t, pad)]

    def to_ours_(ts: Tensors) -> Tensors:
        (t,) = ts
        return [t if t.dim() <= dim else t.narrow(dim, 0, inner).contiguous()]

    return [Rule((f"{theirs}.{p}",), (f"{ours}.{p}",), to_ours_, to_theirs_) for p in params]


def _bert_layer(hf: str, ours: str, cfg: ModelConfig) -> list[Rule]:
    rules = []
    narrow = _narrow_heads(cfg)
    for name in ("query", "key", "value"):
        theirs_q, ours_q = f"{hf}.attention.self.{name}", f"{ours}.self_attn.{name}"
        rules += _zero_padded(theirs_q, ours_q, cfg, 0, ("weight", "bias")) if narrow else copy(theirs_q, ours_q)
    if narrow:
        rules += _zero_padded(f"{hf}.attention.output.dense", f"{ours}.self_attn.output", cfg, 1, ("weight",))
        rules += copy(f"{hf}.attention.output.dense", f"{ours}.self_attn.output", ("bias",))
    else:
        rules += copy(f"{hf}.attention.output.dense", f"{ours}.self_attn.output")
    rules += copy(f"{hf}.attention.output.LayerNorm", f"{ours}.layer_norm_1")
    rules += copy(f"{hf}.intermediate.dense", f"{ours}.feed_forward.linear_1")
    rules += copy(f"{hf}.output.dense", f"{ours}.feed_forward.linear_2")
    rules += copy(f"{hf}.output.LayerNorm", f"{ours}.layer_norm_2")
    return rules


def _bert_body(cfg: ModelConfig, hf: dict) -> list[Rule]:
    rules = [Rule(("embeddings.word_embeddings.weight",), ("embedding.word.embedding.weight",)),
             _segment_rule("embeddings.token_type_embeddings.weight", _type_vocab(hf, "config.json")),
             *copy("embeddings.LayerNorm", "embedding.layer_norm")]
    for i in range(cfg.layers_num):
        rules += _bert_layer(f"encoder.layer.{i}", f"encoder.transformer.{i}", cfg)
    return rules


def _pooler(hf: str, cfg: ModelConfig) -> list[Rule]:
    """The pooler is our sp head's linear_1; without an sp target it is kept as an extra."""
    if "sp" in cfg.target:
        return copy(hf, "target.sp.linear_1")
    return copy(hf, f"{EXTRA}hf.{hf}", optional=True)


def _decoder_bias_in(ts: Tensors) -> Tensors:
    used, spare = ts  # the decoder's bias is what the forward adds; the head's own copy only if it differs
    return [used, None if torch.equal(used, spare) else spare]


def _decoder_bias_out(ts: Tensors) -> Tensors:
    used, spare = ts
    return [used, used.clone() if spare is None else spare]


def _mlm_head(cfg: ModelConfig, dense: str, norm: str, bias: str, decoder: str) -> list[Rule]:
    """Tied: HF ties decoder.weight to the word embedding and decoder.bias to `bias`, and saves neither.
    Untied (transformers 5): two separate biases, saved both; the decoder's is the one used."""
    rules = copy(dense, "target.mlm.linear_1") + copy(norm, "target.mlm.layer_norm")
    if cfg.tie_weights:
        rules.append(Rule((bias,), ("target.mlm.linear_2.bias",)))
    else:
        rules.append(Rule((f"{decoder}.weight",), ("target.mlm.linear_2.weight",)))
        rules.append(Rule((f"{decoder}.bias", bias), ("target.mlm.linear_2.bias", f"{EXTRA}hf.{bias}"),
                          _decoder_bias_in, _decoder_bias_out))
    return rules


def _bert_like_out(cfg: ModelConfig, base: dict, family: str, model_type: str) -> dict:
    heads = cfg.heads_num
    if _narrow_heads(cfg):
        if family not in ("bert", "roberta", "ernie") or cfg.hidden_size % cfg.head_size:
            raise ValueError(f"cannot write Hugging Face {family}: heads_num {cfg.heads_num} of attention_head_size "
                             f"{cfg.head_size} (a pruned model) needs hidden_size ({cfg.hidden_size}) to be a multiple "
                             "of attention_head_size, in bert, roberta or ernie (written with the pruned heads zero)")
        heads = cfg.hidden_size // cfg.head_size
    hf = dict(base)
    hf.update(model_type=model_type, vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
              num_hidden_layers=cfg.layers_num, num_attention_heads=heads,
              intermediate_size=cfg.feedforward_size, max_position_embeddings=cfg.max_seq_length,
              hidden_act=_act_out(cfg, base.get("hidden_act"), family), layer_norm_eps=cfg.layernorm_eps,
              hidden_dropout_prob=cfg.dropout)
    hf.setdefault("attention_probs_dropout_prob", cfg.dropout)
    hf.setdefault("initializer_range", 0.02)
    return hf


def _tie_out(cfg: ModelConfig, base: dict, head: str) -> bool:
    return cfg.tie_weights if head in cfg.target else bool(base.get("tie_word_embeddings", True))


# ---- BERT -----------------------------------------------------------------------------------------
def bert_to_config(hf: dict, keys: set[str], source: str) -> ModelConfig:
    _type_vocab(hf, source)
    _absolute_positions(hf, source)
    has_mlm = any(k.startswith("cls.predictions.") for k in keys)
    has_sp = any(k.startswith("cls.seq_relationship.") for k in keys)
    target = [t for t, present in (("mlm", has_mlm), ("sp", has_sp)) if present]
    return ModelConfig(
        embedding=("word", "pos", "seg"), encoder="transformer", target=tuple(target),
        vocab_size=hf["vocab_size"], emb_size=hf["hidden_size"], hidden_size=hf["hidden_size"],
        feedforward_size=hf["intermediate_size"], heads_num=hf["num_attention_heads"],
        layers_num=hf["num_hidden_layers"], max_seq_length=hf["max_position_embeddings"],
        dropout=hf.get("hidden_dropout_prob", 0.1), hidden_act=_act(hf.get("hidden_act", "gelu"), source),
        layernorm_eps=hf.get("layer_norm_eps", 1e-12), mask="fully_visible", layernorm_positioning="post",
        tie_weights=has_mlm and hf.get("tie_word_embeddings", True),
        data_processor="bert" if has_sp else "mlm")


_BERT_SHAPE = dict(embedding=("word", "pos", "seg"), encoder="transformer", mask="fully_visible",
                   layernorm_positioning="post", remove_embedding_layernorm=False,
                   factorized_embedding_parameterization=False, parameter_sharing=False)


def bert_from_config(cfg: ModelConfig, base: dict, state: dict) -> dict:
    _require(cfg, "bert", **_BERT_SHAPE)
    hf = _bert_like_out(cfg, base, "bert", "bert")
    hf.setdefault("type_vocab_size", 2)
    hf.setdefault("pad_token_id", 0)
    hf["tie_word_embeddings"] = _tie_out(cfg, base, "mlm")
    return hf


def _bert_heads(cfg: ModelConfig) -> list[Rule]:
    """BertForPreTraining's pooler and heads (ErnieForPreTraining's are the same): NSP/SOP and the MLM."""
    rules = _pooler("pooler.dense", cfg)
    if "sp" in cfg.target:
        rules += copy("cls.seq_relationship", "target.sp.linear_2")
    if "mlm" in cfg.target:
        rules += _mlm_head(cfg, "cls.predictions.transform.dense", "cls.predictions.transform.LayerNorm",
                           "cls.predictions.bias", "cls.predictions.decoder")
    return rules


def bert_rules(cfg: ModelConfig, hf: dict) -> list[Rule]:
    rules = _bert_body(cfg, hf)
    rules.append(Rule(("embeddings.position_embeddings.weight",), ("embedding.pos.embedding.weight",)))
    return rules + _bert_heads(cfg)


# ---- RoBERTa --------------------------------------------------------------------------------------
def _position_offset(hf: dict) -> int:
    return int(hf.get("pad_token_id", 1)) + 1  # HF positions start at padding_idx + 1


def roberta_to_config(hf: dict, keys: set[str], source: str) -> ModelConfig:
    _type_vocab(hf, source)
    _absolute_positions(hf, source)
    has_mlm = any(k.startswith("lm_head.") for k in keys)
    if has_mlm and hf.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"{source}: hidden_act '{hf['hidden_act']}': RoBERTa's MLM head applies exact gelu "
                         "whatever hidden_act says, and uer_ds's head uses hidden_act; only 'gelu' converts exactly")
    return ModelConfig(
        embedding=("word", "pos", "seg"), encoder="transformer", target=("mlm",) if has_mlm else (),
        vocab_size=hf["vocab_size"], emb_size=hf["hidden_size"], hidden_size=hf["hidden_size"],
        feedforward_size=hf["intermediate_size"], heads_num=hf["num_attention_heads"],
        layers_num=hf["num_hidden_layers"], max_seq_length=hf["max_position_embeddings"] - _position_offset(hf),
        dropout=hf.get("hidden_dropout_prob", 0.1), hidden_act=_act(hf.get("hidden_act", "gelu"), source),
        layernorm_eps=hf.get("layer_norm_eps", 1e-12), mask="fully_visible", layernorm_positioning="post",
        tie_weights=has_mlm and hf.get("tie_word_embeddings", True), data_processor="mlm")


def roberta_from_config(cfg: ModelConfig, base: dict, state: dict) -> dict:
    _require(cfg, "roberta", **_BERT_SHAPE)
    if "mlm" in cfg.target and cfg.hidden_act != "gelu":
        raise ValueError(f"cannot write Hugging Face roberta: key 'hidden_act' has value '{cfg.hidden_act}', but "
                         "RoBERTa's MLM head always applies exact gelu; only 'gelu' converts exactly")
    hf = _bert_like_out(cfg, base, "roberta", "roberta")
    for key, value in (("pad_token_id", 1), ("bos_token_id", 0), ("eos_token_id", 2)):
        hf.setdefault(key, value)
    hf["max_position_embeddings"] = cfg.max_seq_length + _position_offset(hf)
    if "type_vocab_size" not in hf:  # one type unless our two segments were trained apart
        seg = state["embedding.seg.embedding.weight"]
        hf["type_vocab_size"] = 1 if torch.equal(seg[1], seg[2]) else 2
    hf["tie_word_embeddings"] = _tie_out(cfg, base, "mlm")
    return hf


def _roberta_positions(offset: int) -> Rule:
    def to_ours_(ts: Tensors) -> Tensors:
        (table,) = ts
        return [table[offset:], table[:offset]]

    def to_theirs_(ts: Tensors) -> Tensors:
        table, reserved = ts
        if reserved is None:  # a model that never was RoBERTa: HF zeroes the padding row; the rest is unread
            reserved = table.new_zeros(offset, table.shape[1])
        return [torch.cat([reserved, table], dim=0)]

    return Rule(("embeddings.position_embeddings.weight",),
                ("embedding.pos.embedding.weight", f"{EXTRA}hf.embeddings.position_embeddings.reserved_rows"),
                to_ours_, to_theirs_)


def roberta_rules(cfg: ModelConfig, hf: dict) -> list[Rule]:
    rules = _bert_body(cfg, hf) + [_roberta_positions(_position_offset(hf))] + _pooler("pooler.dense", cfg)
    if "mlm" in cfg.target:
        rules += _mlm_head(cfg, "lm_head.dense", "lm_head.layer_norm", "lm_head.bias", "lm_head.decoder")
    return rules


# ---- ALBERT ---------------------------------------------------------------------------------------
def albert_to_config(hf: dict, keys: set[str], source: str) -> ModelConfig:
    _type_vocab(hf, source)
    _absolute_positions(hf, source)
    layers, groups = hf["num_hidden_layers"], hf.get("num_hidden_groups", 1)
    if hf.get("inner_group_num", 1) != 1:
        raise ValueError(f"{source}: inner_group_num {hf['inner_group_num']}: uer_ds holds one layer per group")
    if groups not in (1, layers):
        raise ValueError(f"{source}: num_hidden_groups {groups}: uer_ds shares one layer (1) or none ({layers})")
    has_mlm = any(k.startswith("predictions.") for k in keys)
    has_sp = any(k.startswith("sop_classifier.") for k in keys)
    target = [t for t, present in (("mlm", has_mlm), ("sp", has_sp)) if present]
    return ModelConfig(
        embedding=("word", "pos", "seg"), encoder="transformer", target=tuple(target),
        vocab_size=hf["vocab_size"], emb_size=hf["embedding_size"], hidden_size=hf["hidden_size"],
        feedforward_size=hf["intermediate_size"], heads_num=hf["num_attention_heads"], layers_num=layers,
        max_seq_length=hf["max_position_embeddings"], dropout=hf.get("hidden_dropout_prob", 0.0),
        hidden_act=_act(hf.get("hidden_act", "gelu_new"), source), layernorm_eps=hf.get("layer_norm_eps", 1e-12),
        mask="fully_visible", layernorm_positioning="post", factorized_embedding_parameterization=True,
        parameter_sharing=groups == 1, tie_weights=has_mlm and hf.get("tie_word_embeddings", True),
        data_processor="albert" if has_sp else "mlm")


def albert_from_config(cfg: ModelConfig, base: dict, state: dict) -> dict:
    _require(cfg, "albert", **dict(_BERT_SHAPE, factorized_embedding_parameterization=True,
                                   parameter_sharing=cfg.parameter_sharing))
    hf = _bert_like_out(cfg, base, "albert", "albert")
    hf.update(embedding_size=cfg.emb_size, inner_group_num=1,
              num_hidden_groups=1 if cfg.parameter_sharing else cfg.layers_num)
    for key, value in (("type_vocab_size", 2), ("pad_token_id", 0), ("bos_token_id", 2), ("eos_token_id", 3),
                       ("classifier_dropout_prob", 0.1)):
        hf.setdefault(key, value)
    hf["tie_word_embeddings"] = _tie_out(cfg, base, "mlm")
    return hf


def albert_rules(cfg: ModelConfig, hf: dict) -> list[Rule]:
    rules = [Rule(("embeddings.word_embeddings.weight",), ("embedding.word.embedding.weight",)),
             Rule(("embeddings.position_embeddings.weight",), ("embedding.pos.embedding.weight",)),
             _segment_rule("embeddings.token_type_embeddings.weight", _type_vocab(hf, "config.json")),
             *copy("embeddings.LayerNorm", "embedding.layer_norm"),
             *copy("encoder.embedding_hidden_mapping_in", "encoder.linear")]
    for g in range(1 if cfg.parameter_sharing else cfg.layers_num):
        theirs, ours = f"encoder.albert_layer_groups.{g}.albert_layers.0", f"encoder.transformer.{g}"
        for name in ("query", "key", "value"):
            rules += copy(f"{theirs}.attention.{name}", f"{ours}.self_attn.{name}")
        rules += copy(f"{theirs}.attention.dense", f"{ours}.self_attn.output")
        rules += copy(f"{theirs}.attention.LayerNorm", f"{ours}.layer_norm_1")
        rules += copy(f"{theirs}.ffn", f"{ours}.feed_forward.linear_1")
        rules += copy(f"{theirs}.ffn_output", f"{ours}.feed_forward.linear_2")
        rules += copy(f"{theirs}.full_layer_layer_norm", f"{ours}.layer_norm_2")
    rules += _pooler("pooler", cfg)
    if "sp" in cfg.target:
        rules += copy("sop_classifier.classifier", "target.sp.linear_2")
    if "mlm" in cfg.target:
        rules += _mlm_head(cfg, "predictions.dense", "predictions.LayerNorm", "predictions.bias",
                           "predictions.decoder")
    return rules


# ---- GPT-2 ----------------------------------------------------------------------------------------
def gpt2_to_config(hf: dict, keys: set[str], source: str) -> ModelConfig:
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if hf.get(flag):
            raise ValueError(f"{source}: {flag} is true: not supported by uer_ds")
    if not hf.get("scale_attn_weights", True):
        raise ValueError(f"{source}: scale_attn_weights is false: not supported by uer_ds")
    width = hf["n_embd"]
    has_lm = "lm_head.weight" in keys or any("LMHead" in a for a in hf.get("architectures") or [])
    return ModelConfig(
        embedding=("word", "pos"), encoder="transformer", target=("lm",) if has_lm else (),
        vocab_size=hf["vocab_size"], emb_size=width, hidden_size=width, feedforward_size=hf.get("n_inner") or 4 * width,
        heads_num=hf["n_head"], layers_num=hf["n_layer"], max_seq_length=hf["n_positions"],
        dropout=hf.get("resid_pdrop", 0.1), hidden_act=_act(hf.get("activation_function", "gelu_new"), source),
        layernorm_eps=hf.get("layer_norm_epsilon", 1e-5), remove_embedding_layernorm=True, mask="causal",
        layernorm_positioning="pre", tie_weights=has_lm and hf.get("tie_word_embeddings", True),
        data_processor="lm")


def gpt2_from_config(cfg: ModelConfig, base: dict, state: dict) -> dict:
    _require(cfg, "gpt2", embedding=("word", "pos"), encoder="transformer", mask="causal",
             layernorm_positioning="pre", remove_embedding_layernorm=True,
             factorized_embedding_parameterization=False, parameter_sharing=False, has_lmtarget_bias=False)
    if _narrow_heads(cfg):
        raise ValueError(f"cannot write Hugging Face gpt2: heads_num {cfg.heads_num} of attention_head_size "
                         f"{cfg.head_size} do not fill hidden_size ({cfg.hidden_size}); GPT-2's fused c_attn needs them to")
    hf = dict(base)
    default_inner = base.get("n_inner", 0) is None and cfg.feedforward_size == 4 * cfg.hidden_size
    hf.update(model_type="gpt2", vocab_size=cfg.vocab_size, n_embd=cfg.hidden_size, n_layer=cfg.layers_num,
              n_head=cfg.heads_num, n_positions=cfg.max_seq_length,
              n_inner=None if default_inner else cfg.feedforward_size,
              activation_function=_act_out(cfg, base.get("activation_function"), "gpt2"),
              layer_norm_epsilon=cfg.layernorm_eps, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout,
              attn_pdrop=cfg.dropout, tie_word_embeddings=_tie_out(cfg, base, "lm"))
    hf.setdefault("initializer_range", 0.02)
    hf.setdefault("bos_token_id", None)  # unknown for a model that never was GPT-2; the source's otherwise
    hf.setdefault("eos_token_id", None)
    return hf


def _conv1d(ts: Tensors) -> Tensors:
    # HF GPT-2 Conv1D stores (in, out); nn.Linear stores (out, in).  Its own inverse.
    return [t.t().contiguous() if t.dim() == 2 else t for t in ts]


def _split_qkv(ts: Tensors) -> Tensors:
    (fused,) = ts  # weight (H, 3H) or bias (3H,)
    return _conv1d(list(fused.chunk(3, dim=-1)))


def _fuse_qkv(ts: Tensors) -> Tensors:
    return [torch.cat(_conv1d(ts), dim=-1)]


def gpt2_rules(cfg: ModelConfig, hf: dict) -> list[Rule]:
    rules = [Rule(("wte.weight",), ("embedding.word.embedding.weight",)),
             Rule(("wpe.weight",), ("embedding.pos.embedding.weight",))]
    for i in range(cfg.layers_num):
        theirs, ours = f"h.{i}", f"encoder.transformer.{i}"
        rules += copy(f"{theirs}.ln_1", f"{ours}.layer_norm_1") + copy(f"{theirs}.ln_2", f"{ours}.layer_norm_2")
        for p in ("weight", "bias"):
            rules.append(Rule((f"{theirs}.attn.c_attn.{p}",),
                              tuple(f"{ours}.self_attn.{n}.{p}" for n in ("query", "key", "value")),
                              _split_qkv, _fuse_qkv))
            for hf_name, our_name in (("attn.c_proj", "self_attn.output"), ("mlp.c_fc", "feed_forward.linear_1"),
                                      ("mlp.c_proj", "feed_forward.linear_2")):
                rules.append(Rule((f"{theirs}.{hf_name}.{p}",), (f"{ours}.{our_name}.{p}",), _conv1d, _conv1d))
    rules += copy("ln_f", "encoder.layer_norm")
    if "lm" in cfg.target and not cfg.tie_weights:
        rules.append(Rule(("lm_head.weight",), ("target.lm.output_layer.weight",)))
    return rules


# ---- ERNIE (issue 27) ------------------------------------------------------------------------------
# Hugging Face's ErnieModel is BERT plus, with use_task_id, a task-type embedding (task_type_embeddings,
# task_type_vocab_size rows) added to word, position and token-type embeddings: our `task` embedding part
# (task_types_num).  ERNIE 3.0 checkpoints have type_vocab_size 4: HF types 0 and 1 are our segments 1 and
# 2, the rows past them travel as an extra (no uer_ds input ever reads them).
def _ernie_segment_rule(types: int) -> Rule:
    key = "embeddings.token_type_embeddings.weight"
    if types <= 2:
        return _segment_rule(key, types)

    def to_ours_(ts: Tensors) -> Tensors:
        (table,) = ts
        return [torch.cat([table[:1], table[:2]], dim=0), table[2:]]

    def to_theirs_(ts: Tensors) -> Tensors:
        ours, rest = ts
        return [torch.cat([ours[1:3], rest], dim=0)]

    return Rule((key,), ("embedding.seg.embedding.weight", f"{EXTRA}hf.{key}.rows_2_on"), to_ours_, to_theirs_)


def ernie_to_config(hf: dict, keys: set[str], source: str) -> ModelConfig:
    _absolute_positions(hf, source)
    if hf.get("is_decoder"):
        raise ValueError(f"{source}: is_decoder is true: uer_ds reads ERNIE encoders (ErnieModel), not ErnieForCausalLM")
    types = hf.get("type_vocab_size", 2)
    if types < 1:
        raise ValueError(f"{source}: type_vocab_size {types}: must be at least 1")
    cfg = bert_to_config(dict(hf, type_vocab_size=min(types, 2)), keys, source)
    if hf.get("use_task_id"):
        cfg = cfg.replace(embedding=("word", "pos", "seg", "task"), task_types_num=hf.get("task_type_vocab_size", 3))
    return cfg


def ernie_from_config(cfg: ModelConfig, base: dict, state: dict) -> dict:
    task = "task" in cfg.embedding
    _require(cfg, "ernie", **dict(_BERT_SHAPE, embedding=("word", "pos", "seg", "task") if task else
                                  ("word", "pos", "seg")))
    hf = _bert_like_out(cfg, base, "ernie", "ernie")
    hf.setdefault("type_vocab_size", 2)
    hf.setdefault("pad_token_id", 0)
    hf.update(use_task_id=task, task_type_vocab_size=cfg.task_types_num if task else hf.get("task_type_vocab_size", 3),
              tie_word_embeddings=_tie_out(cfg, base, "mlm"))
    return hf


def ernie_rules(cfg: ModelConfig, hf: dict) -> list[Rule]:
    rules = [Rule(("embeddings.word_embeddings.weight",), ("embedding.word.embedding.weight",)),
             Rule(("embeddings.position_embeddings.weight",), ("embedding.pos.embedding.weight",)),
             _ernie_segment_rule(hf.get("type_vocab_size", 2)),
             *copy("embeddings.LayerNorm", "embedding.layer_norm")]
    if "task" in cfg.embedding:
        rules.append(Rule(("embeddings.task_type_embeddings.weight",), ("embedding.task.embedding.weight",)))
    for i in range(cfg.layers_num):
        rules += _bert_layer(f"encoder.layer.{i}", f"encoder.transformer.{i}", cfg)
    return rules + _bert_heads(cfg)


# ---- the family registry --------------------------------------------------------------------------
@dataclass(frozen=True)
class Family:
    model_type: str
    prefix: str  # the body's prefix inside a model with heads
    head_prefixes: tuple[str, ...]  # keys outside the body
    to_config: Callable[[dict, set[str], str], ModelConfig]
    from_config: Callable[[ModelConfig, dict, dict], dict]
    rules: Callable[[ModelConfig, dict], list[Rule]]
    classes: dict[frozenset, str]  # our targets -> the HF class written
    tied: tuple[str, ...]  # HF keys that repeat others when tied (never reported unused)
    droppable: tuple[str, ...] = ()  # our targets the family has no head for: left out when writing, and said so


FAMILIES: dict[str, Family] = {
    "bert": Family("bert", "bert.", ("cls.",), bert_to_config, bert_from_config, bert_rules,
                   {frozenset({"mlm", "sp"}): "BertForPreTraining", frozenset({"mlm"}): "BertForMaskedLM",
                    frozenset({"sp"}): "BertForNextSentencePrediction", frozenset(): "BertModel"},
                   ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")),
    "roberta": Family("roberta", "roberta.", ("lm_head.",), roberta_to_config, roberta_from_config, roberta_rules,
                      {frozenset({"mlm"}): "RobertaForMaskedLM", frozenset(): "RobertaModel"},
                      ("lm_head.decoder.weight", "lm_head.decoder.bias")),
    "albert": Family("albert", "albert.", ("predictions.", "sop_classifier."), albert_to_config,
                     albert_from_config, albert_rules,
                     {frozenset({"mlm", "sp"}): "AlbertForPreTraining", frozenset({"mlm"}): "AlbertForMaskedLM",
                      frozenset(): "AlbertModel"},
                     ("predictions.decoder.weight", "predictions.decoder.bias")),
    "gpt2": Family("gpt2", "transformer.", ("lm_head.",), gpt2_to_config, gpt2_from_config, gpt2_rules,
                   {frozenset({"lm"}): "GPT2LMHeadModel", frozenset(): "GPT2Model"}, ("lm_head.weight",)),
    "ernie": Family("ernie", "ernie.", ("cls.",), ernie_to_config, ernie_from_config, ernie_rules,
                    {frozenset({"mlm", "sp"}): "ErnieForPreTraining", frozenset({"mlm"}): "ErnieForMaskedLM",
                     frozenset({"sp"}): "ErnieForNextSentencePrediction", frozenset(): "ErnieModel"},
                    ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias"),
                    droppable=("capitalization", "token_document", "sentence_reorder", "sentence_distance",
                               "discourse", "ir_relevance")),
}
# Buffers Hugging Face may store; never reported as unused.
_IGNORED_SUFFIXES = ("position_ids", "token_type_ids", "attn.bias", "attn.masked_bias")
# MLM output biases: the decoder's and the head's, one parameter when tied (and in transformers 4), so a
# file may hold either or both; reading fills in the absent one.
_DECODER_BIASES = {"cls.predictions.decoder.bias": "cls.predictions.bias", "lm_head.decoder.bias": "lm_head.bias",
                   "predictions.decoder.bias": "predictions.bias"}


def family_of(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"model has value '{name}': must be one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def _normalise_keys(state: dict[str, torch.Tensor], family: Family
                    ) -> tuple[dict[str, torch.Tensor], Callable[[str], str]]:
    """Keys without the body prefix and TF-era names; and the function naming a key as the file does."""
    out, original = {}, {}
    for name, value in state.items():
        key = name[len(family.prefix):] if name.startswith(family.prefix) else name
        if key.endswith(".gamma") or key.endswith(".beta"):  # TF-era LayerNorm names
            key = key.rsplit(".", 1)[0] + (".weight" if key.endswith(".gamma") else ".bias")
        out[key], original[key] = value, name
    prefixed = any(name.startswith(family.prefix) for name in state)

    def display(key: str) -> str:
        if key in original:
            return original[key]
        return family.prefix + key if prefixed and not key.startswith(family.head_prefixes) else key
    for decoder_bias, bias in _DECODER_BIASES.items():
        if (decoder_bias in out) != (bias in out):
            out[bias] = out[decoder_bias] = out.get(bias, out.get(decoder_bias))
    return out, display


def read_hf_config(input_dir: Path, family: Family) -> dict:
    config_path = input_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{input_dir}: not a Hugging Face model directory (config.json is missing)")
    hf_config = load_json(config_path, "config.json")
    model_type = hf_config.get("model_type")
    if model_type != family.model_type:
        raise ValueError(f"{config_path}: model_type is '{model_type}', not a {family.model_type} model; "
                         "check --model")
    return hf_config


def read_hf(input_dir: PathLike, family_name: str) -> tuple[Checkpoint, Report]:
    """A Hugging Face model directory -> (our checkpoint, report)."""
    family = family_of(family_name)
    input_dir = Path(input_dir)
    hf_config = read_hf_config(input_dir, family)
    state, display = _normalise_keys(read_weights(input_dir), family)
    source = str(input_dir / "config.json")
    try:
        cfg = family.to_config(hf_config, set(state), source)
    except KeyError as err:
        raise ValueError(f"{source}: key {err} is missing") from None
    rules = family.rules(cfg, hf_config)
    ours, extra, used = to_ours(state, rules, expected_shapes(cfg), str(input_dir), display)
    into_model = {k for rule in rules if any(not o.startswith(EXTRA) for o in rule.ours) for k in rule.theirs}
    ignored = set(family.tied) if cfg.tie_weights else set()
    unused = sorted(k for k in state if k not in into_model and k not in ignored
                    and not k.endswith(_IGNORED_SUFFIXES))
    report = Report(converted=len(ours), unused_input=unused, kept=sorted(extra),
                    notes=[f"read Hugging Face {family_name}: targets {', '.join(cfg.target) or 'none'}"])
    return Checkpoint(cfg, ours, extra, meta={"hf_config": hf_config}), report


def write_hf(ckpt: Checkpoint, output_dir: PathLike, family_name: str) -> Report:
    """Our checkpoint -> a Hugging Face model directory (config.json + model.safetensors)."""
    family = family_of(family_name)
    ckpt, dropped = _drop_heads(ckpt, family)
    cfg = ckpt.config
    cls = family.classes.get(frozenset(cfg.target))
    if cls is None:
        raise ValueError(f"cannot write Hugging Face {family_name}: targets {list(cfg.target)} have no Hugging Face "
                         f"class (supported: {'; '.join(f'{sorted(t)} -> {c}' for t, c in family.classes.items())})")
    base = ckpt.meta.get("hf_config") or {}
    base = base if base.get("model_type") == family.model_type else {}
    hf_config = family.from_config(cfg, base, ckpt.state)
    theirs, used_extra = to_theirs(ckpt, family.rules(cfg, hf_config))
    if cls != family.classes[frozenset()]:  # a model with heads: the body sits under the prefix
        theirs = {k if k.startswith(family.head_prefixes) else family.prefix + k: v for k, v in theirs.items()}
    dtype = {t.dtype for t in theirs.values()}
    hf_config["architectures"] = [cls]
    hf_config["dtype"] = str(dtype.pop() if len(dtype) == 1 else torch.float32).removeprefix("torch.")
    with new_directory(output_dir) as tmp:
        save_file(theirs, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    notes = [f"wrote Hugging Face {cls}"]
    if _narrow_heads(cfg):
        notes.append(f"{cfg.heads_num} heads of size {cfg.head_size} per layer (pruned) written as "
                     f"{hf_config['num_attention_heads']}, the other heads' weights zero (transformers 5 has no "
                     "pruned_heads): the same outputs, no speed-up in Hugging Face")
    return Report(converted=len(theirs), not_carried=sorted(set(ckpt.extra) - used_extra) + dropped, notes=notes)


def _drop_heads(ckpt: Checkpoint, family: Family) -> tuple[Checkpoint, list[str]]:
    """The checkpoint without the heads the family has no Hugging Face head for (ERNIE 2.0's pre-training
    heads: HF's ERNIE classes hold MLM and NSP only), and the dropped keys."""
    drop = [t for t in ckpt.config.target if t in family.droppable]
    if not drop:
        return ckpt, []
    prefixes = tuple(f"target.{t}." for t in drop)
    keep = {k: v for k, v in ckpt.state.items() if not k.startswith(prefixes)}
    cfg = ckpt.config.replace(target=tuple(t for t in ckpt.config.target if t not in drop))
    return Checkpoint(cfg, keep, ckpt.extra, meta=ckpt.meta), sorted(set(ckpt.state) - set(keep))
