"""Hugging Face Transformers <-> uer_ds, as key-mapping tables.

A table is a list of rules; a rule names the Hugging Face keys, our keys, and the function that turns
the former into the latter (most are one-to-one copies).  Every conversion reports the input keys it
did not use and fails on shape mismatches with the key and both shapes.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

import torch

from uer_ds.config import ModelConfig
from uer_ds.convert.weights import read_weights

Tensors = list[torch.Tensor]


@dataclass
class Rule:
    hf: tuple[str, ...]
    ours: tuple[str, ...]
    to_ours: Callable[[Tensors], Tensors] = lambda ts: ts


@dataclass
class Report:
    converted: int = 0
    unused_input: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"converted tensors: {self.converted}"]
        if self.unused_input:
            out.append(f"input keys not used ({len(self.unused_input)}): {', '.join(self.unused_input)}")
        return out


def _copy(hf: str, ours: str) -> list[Rule]:
    return [Rule((f"{hf}.{p}",), (f"{ours}.{p}",)) for p in ("weight", "bias")]


# ---- BERT ---------------------------------------------------------------------------------------
_HF_ACT = {"gelu": "gelu", "gelu_new": "gelu_fast", "gelu_pytorch_tanh": "gelu_fast", "gelu_fast": "gelu_fast",
           "relu": "relu", "silu": "silu", "swish": "silu"}


def _act(name: str, source: str) -> str:
    if name not in _HF_ACT:
        raise ValueError(f"{source}: hidden_act '{name}' has no uer_ds equivalent (supported: {', '.join(_HF_ACT)})")
    return _HF_ACT[name]


def bert_config(hf: dict, keys: set[str], source: str) -> ModelConfig:
    if hf.get("type_vocab_size", 2) != 2:
        raise ValueError(f"{source}: type_vocab_size {hf['type_vocab_size']}: uer_ds segments hold 2 (plus padding)")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{source}: position_embedding_type '{hf['position_embedding_type']}' is not supported")
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


def _segments_to_ours(ts: Tensors) -> Tensors:
    # HF token types (2, H) -> our segments (3, H): 0 = padding (HF pads with type 0), 1, 2.
    (table,) = ts
    return [torch.cat([table[:1], table], dim=0)]


def bert_rules(cfg: ModelConfig) -> list[Rule]:
    rules = [Rule(("embeddings.word_embeddings.weight",), ("embedding.word.embedding.weight",)),
             Rule(("embeddings.position_embeddings.weight",), ("embedding.pos.embedding.weight",)),
             Rule(("embeddings.token_type_embeddings.weight",), ("embedding.seg.embedding.weight",),
                  _segments_to_ours),
             *_copy("embeddings.LayerNorm", "embedding.layer_norm")]
    for i in range(cfg.layers_num):
        hf, ours = f"encoder.layer.{i}", f"encoder.transformer.{i}"
        for name in ("query", "key", "value"):
            rules += _copy(f"{hf}.attention.self.{name}", f"{ours}.self_attn.{name}")
        rules += _copy(f"{hf}.attention.output.dense", f"{ours}.self_attn.output")
        rules += _copy(f"{hf}.attention.output.LayerNorm", f"{ours}.layer_norm_1")
        rules += _copy(f"{hf}.intermediate.dense", f"{ours}.feed_forward.linear_1")
        rules += _copy(f"{hf}.output.dense", f"{ours}.feed_forward.linear_2")
        rules += _copy(f"{hf}.output.LayerNorm", f"{ours}.layer_norm_2")
    if "sp" in cfg.target:
        rules += _copy("pooler.dense", "target.sp.linear_1") + _copy("cls.seq_relationship", "target.sp.linear_2")
    if "mlm" in cfg.target:
        rules += _copy("cls.predictions.transform.dense", "target.mlm.linear_1")
        rules += _copy("cls.predictions.transform.LayerNorm", "target.mlm.layer_norm")
        rules.append(Rule(("cls.predictions.bias",), ("target.mlm.linear_2.bias",)))
        if not cfg.tie_weights:
            rules.append(Rule(("cls.predictions.decoder.weight",), ("target.mlm.linear_2.weight",)))
    return rules


# ---- GPT-2 --------------------------------------------------------------------------------------
def gpt2_config(hf: dict, keys: set[str], source: str) -> ModelConfig:
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


def _conv1d(ts: Tensors) -> Tensors:
    # HF GPT-2 Conv1D stores (in, out); nn.Linear stores (out, in).
    return [t.t().contiguous() if t.dim() == 2 else t for t in ts]


def _split_qkv(ts: Tensors) -> Tensors:
    (fused,) = ts  # weight (H, 3H) or bias (3H,)
    parts = fused.chunk(3, dim=-1)
    return _conv1d(list(parts))


def gpt2_rules(cfg: ModelConfig) -> list[Rule]:
    rules = [Rule(("wte.weight",), ("embedding.word.embedding.weight",)),
             Rule(("wpe.weight",), ("embedding.pos.embedding.weight",))]
    for i in range(cfg.layers_num):
        hf, ours = f"h.{i}", f"encoder.transformer.{i}"
        rules += _copy(f"{hf}.ln_1", f"{ours}.layer_norm_1") + _copy(f"{hf}.ln_2", f"{ours}.layer_norm_2")
        for p in ("weight", "bias"):
            rules.append(Rule((f"{hf}.attn.c_attn.{p}",),
                              tuple(f"{ours}.self_attn.{n}.{p}" for n in ("query", "key", "value")), _split_qkv))
            rules.append(Rule((f"{hf}.attn.c_proj.{p}",), (f"{ours}.self_attn.output.{p}",), _conv1d))
            rules.append(Rule((f"{hf}.mlp.c_fc.{p}",), (f"{ours}.feed_forward.linear_1.{p}",), _conv1d))
            rules.append(Rule((f"{hf}.mlp.c_proj.{p}",), (f"{ours}.feed_forward.linear_2.{p}",), _conv1d))
    rules += _copy("ln_f", "encoder.layer_norm")
    if "lm" in cfg.target and not cfg.tie_weights:
        rules.append(Rule(("lm_head.weight",), ("target.lm.output_layer.weight",)))
    return rules


# ---- driver -------------------------------------------------------------------------------------
FAMILIES = {
    "bert": (bert_config, bert_rules, ("bert.",)),
    "gpt2": (gpt2_config, gpt2_rules, ("transformer.",)),
}
MODEL_TYPES = {"bert": ("bert",), "gpt2": ("gpt2",)}
# Buffers and tied duplicates Hugging Face may store; never reported as unused.
_IGNORED_SUFFIXES = ("position_ids", "attn.bias", "attn.masked_bias")


def _normalise_keys(state: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
        if key.endswith(".gamma") or key.endswith(".beta"):  # TF-era LayerNorm names
            key = key.rsplit(".", 1)[0] + (".weight" if key.endswith(".gamma") else ".bias")
        out[key] = value
    if "cls.predictions.decoder.bias" in out:  # the same tensor as cls.predictions.bias, saved either way
        out.setdefault("cls.predictions.bias", out.pop("cls.predictions.decoder.bias"))
    return out


def hf_to_uer_ds(input_dir: Union[str, os.PathLike], family: str) -> tuple[ModelConfig, dict, Report]:
    """Read a Hugging Face model directory: (our config, our state dict, report)."""
    if family not in FAMILIES:
        raise ValueError(f"model has value '{family}': must be one of {', '.join(FAMILIES)}")
    make_config, make_rules, prefixes = FAMILIES[family]
    input_dir = Path(input_dir)
    config_path = input_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{input_dir}: not a Hugging Face model directory (config.json is missing)")
    hf_config = json.loads(config_path.read_text(encoding="utf-8"))
    model_type = hf_config.get("model_type")
    if model_type not in MODEL_TYPES[family]:
        raise ValueError(f"{config_path}: model_type is '{model_type}', not a {family} model "
                         f"(expected {', '.join(MODEL_TYPES[family])}); check --model")
    state = _normalise_keys(read_weights(input_dir), prefixes)
    cfg = make_config(hf_config, set(state), str(config_path))
    ours: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for rule in make_rules(cfg):
        absent = [k for k in rule.hf if k not in state]
        if absent:
            raise ValueError(f"{input_dir}: Hugging Face key(s) {absent} missing, needed for {list(rule.ours)}")
        outputs = rule.to_ours([state[k] for k in rule.hf])
        ours.update(zip(rule.ours, outputs))
        used.update(rule.hf)
    unused = sorted(k for k in state if k not in used and not k.endswith(_IGNORED_SUFFIXES)
                    and not (cfg.tie_weights and k in ("cls.predictions.decoder.weight", "lm_head.weight")))
    return cfg, ours, Report(converted=len(ours), unused_input=unused)
