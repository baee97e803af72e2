"""Model configuration: a typed, frozen dataclass read from UER-py's JSON model configs unchanged.

Precedence is JSON < command line: `ModelConfig.from_json(path, overrides)` merges the overrides into
the JSON values first and validates the result once, so a flag can repair a file and a flag can be
rejected for what it combines with.  Every error names the key, the value and the rule.

Legal names (embeddings, encoders, targets, activations, ...) come from the registries in
`uer_ds.models`; nothing here keeps a second list of them.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union, get_origin, get_type_hints

from uer_ds.textfile import load_json

# Where the configs shipped with the package live; `--config_path bert/tiny` resolves here.
SHIPPED_CONFIG_DIR = Path(__file__).parent / "model_configs"

MASKS = ("fully_visible", "causal")
LAYERNORM_POSITIONS = ("post", "pre")
POOLINGS = ("first", "last", "mean", "max")
KERNEL_CHOICES = ("auto", "torch", "triton")
UER_DEFAULT_CONFIG = "bert/base"  # UER-py's default --config_path (models/bert/base_config.json)


def _help(text: str, **kwargs: Any) -> Any:
    """A dataclass field whose one-line docstring becomes its `--help` text."""
    return field(metadata={"help": text}, **kwargs)


@dataclass(frozen=True)
class ModelConfig:
    """One model: embedding + encoder + target, with UER-py's key names."""

    embedding: tuple[str, ...] = _help("embedding parts, summed: word, pos, seg, sinusoidalpos, task (or dual)",
                                       default=("word", "pos", "seg"))
    encoder: str = _help("encoder", default="transformer")
    target: tuple[str, ...] = _help("pre-training targets: mlm, sp, lm, bilm, cls, s2s, and ERNIE 2.0's "
                                    "(uer_ds/models/targets/ernie.py)", default=("mlm", "sp"))
    vocab_size: int = _help("vocabulary size; 0 means: take it from the tokenizer's vocabulary", default=0)
    emb_size: int = _help("embedding width", default=768)
    hidden_size: int = _help("encoder width", default=768)
    feedforward_size: int = _help("transformer feed-forward width", default=3072)
    heads_num: int = _help("attention heads", default=12)
    layers_num: int = _help("encoder layers", default=12)
    max_seq_length: int = _help("longest sequence the position embedding covers", default=512)
    dropout: float = _help("dropout probability (embeddings, attention, residual branches)", default=0.1)
    hidden_act: str = _help("activation: gelu, gelu_fast, relu, silu, linear", default="gelu")
    mask: str = _help("attention mask: fully_visible (BERT) or causal (GPT)", default="fully_visible")
    layernorm_positioning: str = _help("post (BERT) or pre (GPT-2) layer norm", default="post")
    layernorm_eps: float = _help("layer norm epsilon", default=1e-6)
    remove_embedding_layernorm: bool = _help("no layer norm after the embedding sum", default=False)
    factorized_embedding_parameterization: bool = _help("ALBERT: emb_size -> hidden_size projection",
                                                        default=False)
    parameter_sharing: bool = _help("ALBERT: one transformer layer applied layers_num times", default=False)
    tie_weights: bool = _help("tie the MLM/LM output matrix to the word embedding", default=False)
    has_lmtarget_bias: bool = _help("bias on the LM output layer", default=False)
    kernel_size: int = _help("convolution width of cnn, rcnn, crnn and gatedcnn", default=4)
    block_size: int = _help("gatedcnn layers per residual block", default=2)
    synt_type: str = _help("synt encoder: the synthesizer (Tay et al., 2020)", default="dense")
    subword_type: str = _help("encode each word from its characters too, added to its embedding: none or char "
                              "(needs --sub_vocab_path and --tokenizer word)", default="none")
    sub_vocab_size: int = _help("character vocabulary size; 0 means: take it from --sub_vocab_path", default=0)
    subencoder: str = _help("subword encoder", default="avg")
    sub_layers_num: int = _help("subencoder layers (lstm, gru)", default=2)
    labels_num: int = _help("classes of the cls target", default=2)
    pooling: str = _help("cls pooling: first, last, mean, max", default="first")
    data_processor: str = _help("the pre-training data this model expects (UER-py's key)", default="bert")
    kernels: str = _help("auto (= torch, the faster on GPUs measured so far), torch or triton for "
                         "LayerNorm and attention", default="auto")
    # ERNIE 2.0 (issue 27): the task embedding and the class counts of its heads (uer_ds/models/targets/ernie.py)
    task_types_num: int = _help("task embedding ('task' in embedding): the number of task ids", default=3)
    task_id: int = _help("task embedding: the id fed where a batch brings none (fine-tuning, inference, one "
                         "dataset)", default=0)
    sentence_reorder_segments: int = _help("sentence_reorder target: at most M segments; sum of k! for k = 1..M "
                                           "classes (from the dataset)", default=3)
    discourse_labels_num: int = _help("discourse target: classes, one per discourse marker (from the dataset)",
                                      default=0)
    stream_0: Optional["ModelConfig"] = _help("dual (siamese) models: the first stream's config", default=None)
    stream_1: Optional["ModelConfig"] = _help("dual (siamese) models: the second stream's config", default=None)

    def __post_init__(self) -> None:
        _validate(self)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "<dict>",
                  overrides: Optional[Mapping[str, Any]] = None) -> "ModelConfig":
        """Build from UER-style keys; `overrides` (the command line's flags, typed or strings) win over
        `values` (a JSON file's).  UER-py's aliases (uer_ds.compat.MODEL_ALIASES) resolve in each layer
        first.  An error about a value names where it came from: `source` for `values`, the flag for
        `overrides`."""
        from uer_ds.compat import AliasError, apply_bidirectional, expand_aliases

        file_values, file_implied = expand_aliases({k: v for k, v in values.items() if k != "bidirectional"})
        flag_values, flag_implied = expand_aliases({k: v for k, v in (overrides or {}).items()
                                                    if k != "bidirectional"})
        origins = {k: ("file", f"{a}") for k, a in file_implied.items()}
        origins.update({k: ("flag", None) for k in (overrides or {})})
        origins.update({k: ("flag", a) for k, a in flag_implied.items()})
        merged = {**file_values, **flag_values}
        bidirectional = (overrides or {}).get("bidirectional", values.get("bidirectional", False))
        try:
            merged = apply_bidirectional(merged, _parse_bool(bidirectional) if isinstance(bidirectional, str)
                                         else bool(bidirectional))
        except AliasError as err:
            in_flags = "bidirectional" in (overrides or {})
            where = "--bidirectional:" if in_flags else f"{source}: key 'bidirectional' is true:"
            raise ValueError(f"{where} {err}") from None
        if merged.get("encoder") == "dual" and "target" not in merged:
            merged["target"] = []  # siamese configs carry no target: the classifier task adds the head
        _untie_without_vocab_output(merged, overrides or {}, source)
        kwargs = {}
        try:
            for key, value in merged.items():
                if key not in _FIELDS:
                    raise ValueError(f"{source}: unknown key '{key}' (value {value!r}): not a ModelConfig field; "
                                     f"known keys: {', '.join(sorted(_FIELDS))}")
                kwargs[key] = _coerce(key, value, source)
            return cls(**kwargs)
        except ConfigError as err:
            raise ValueError(_located(err, origins, source)) from None

    @classmethod
    def from_json(cls, path: Union[str, os.PathLike], overrides: Optional[Mapping[str, Any]] = None
                  ) -> "ModelConfig":
        """Read a UER JSON model config (or a shipped name such as `bert/tiny`), then apply overrides."""
        resolved = resolve_config_path(path)
        values = load_json(resolved, "config_path")
        if not isinstance(values, dict):
            raise ValueError(f"{resolved}: a model config must be a JSON object, got {type(values).__name__}")
        return cls.from_dict(values, source=str(resolved), overrides=overrides)

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # ---- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, ModelConfig):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def to_json(self, path: Union[str, os.PathLike]) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


class ConfigNote(UserWarning):
    """A config value a command changed, and why (shown as one line by `uer-ds`)."""


TIEABLE_TARGETS = ("mlm", "lm", "bilm", "s2s")  # targets with an output over the vocabulary


def _untie_without_vocab_output(merged: dict, overrides: Mapping[str, Any], source: str) -> None:
    """UER-py's BERT configs say tie_weights true; `--target cls` (targets given as flags without an output
    over the vocabulary) leaves nothing to tie: the file's tie_weights is turned off with a note.  A
    --tie_weights flag, or a file whose own targets cannot tie, still meets the config rule."""
    value = merged.get("tie_weights", False)
    if "tie_weights" in overrides or "target" not in overrides:
        return
    if not (_parse_bool(value) if isinstance(value, str) else bool(value)):
        return
    targets = merged.get("target")
    targets = targets.replace(",", " ").split() if isinstance(targets, str) else list(targets or ())
    if targets and not any(t in TIEABLE_TARGETS for t in targets):
        merged["tie_weights"] = False
        warnings.warn(ConfigNote(f"{source} has tie_weights true, but target {targets} has no output over the "
                                 f"vocabulary ({', '.join(TIEABLE_TARGETS)}) to tie: tie_weights off"), stacklevel=3)


_HINTS = get_type_hints(ModelConfig)
_FIELDS = {f.name: f for f in dataclasses.fields(ModelConfig)}


def resolve_config_path(path: Union[str, os.PathLike]) -> Path:
    """A file path as given, else a shipped config name: `bert/tiny` -> model_configs/bert/tiny_config.json."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    name = str(path).removesuffix(".json").removesuffix("_config")
    shipped = SHIPPED_CONFIG_DIR / f"{name}_config.json"
    if shipped.is_file():
        return shipped
    raise FileNotFoundError(f"config_path '{path}': no such file, nor a shipped config name "
                            f"(shipped: {', '.join(shipped_config_names())})")


class ConfigError(ValueError):
    """A value breaks a rule.  `key` is the field; the message starts "key '<key>' ..." and is
    re-worded by `_located` to name the flag or the file the value came from."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _located(err: ConfigError, origins: Mapping[str, tuple[str, Optional[str]]], source: str) -> str:
    """The message of `err` naming what the user wrote: `--key` for a command-line value, the file for
    a JSON value, and the alias that set a key implied by one (`--encoder gpt` sets mask)."""
    text, key = str(err), err.key
    kind, alias = origins.get(key, ("file", None))
    prefix = f"key '{key}'"
    if kind == "flag" and alias is None:
        return f"--{key}{text[len(prefix):]}" if text.startswith(prefix) else f"--{key}: {text}"
    if alias is not None:
        setter = f"--{alias}" if kind == "flag" else f"{alias} in {source}"
        text = f"{prefix} (set by {setter}){text[len(prefix):]}" if text.startswith(prefix) else text
        return text if kind == "flag" else f"{source}: {text}"
    return f"{source}: {text}"


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"'{text}' is not a boolean (use true/false)")


def _coerce(key: str, value: Any, source: str) -> Any:
    """Check (JSON) or convert (command-line strings) one value to its field's type."""
    hint = _HINTS[key]
    if get_origin(hint) is Union:  # Optional[ModelConfig]
        if value is None or isinstance(value, ModelConfig):
            return value
        if not isinstance(value, dict):
            raise ConfigError(key, f"key '{key}' has value {value!r}: must be a JSON object (a stream config)")
        return ModelConfig.from_dict({"target": []} | value, source=f"{source}: {key}")  # a stream has no head
    if get_origin(hint) is tuple:
        if isinstance(value, str):
            value = [part for part in value.replace(",", " ").split() if part]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, f"key '{key}' has value {value!r}: must be a list of names")
        return tuple(value)
    if isinstance(value, str) and hint is not str:
        try:
            return _parse_bool(value) if hint is bool else hint(value)
        except ValueError:
            raise ConfigError(key, f"key '{key}' has value '{value}': must be {hint.__name__}") from None
    ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise ConfigError(key, f"key '{key}' has value {value!r} of type {type(value).__name__}: "
                               f"must be {hint.__name__}")
    return value


# ---- validation -------------------------------------------------------------------------------
def _choice(key: str, value: str, legal: Sequence[str]) -> None:
    from uer_ds.compat import alias_names

    if value not in legal:
        aliases = alias_names(key)
        also = f"; UER-py's names: {', '.join(aliases)}" if aliases else ""
        raise ConfigError(key, f"key '{key}' has value '{value}': must be one of {', '.join(legal)}{also}")


def _positive(cfg: ModelConfig, *keys: str) -> None:
    for key in keys:
        value = getattr(cfg, key)
        if value <= 0:
            raise ConfigError(key, f"key '{key}' has value {value}: must be positive")


def _validate(cfg: ModelConfig) -> None:
    from uer_ds.registry import (ACTIVATIONS, DATA_PROCESSORS, EMBEDDINGS, ENCODERS, SUBENCODERS, SYNTHESIZERS,
                                 TARGETS)

    for name in cfg.embedding:
        _choice("embedding", name, tuple(EMBEDDINGS))
    _choice("encoder", cfg.encoder, tuple(ENCODERS))
    for name in cfg.target:
        _choice("target", name, tuple(TARGETS))
    if len(set(cfg.target)) != len(cfg.target):
        raise ConfigError("target", f"key 'target' has value {list(cfg.target)}: a target may appear once")
    if len(set(cfg.embedding)) != len(cfg.embedding):
        raise ConfigError("embedding", f"key 'embedding' has value {list(cfg.embedding)}: a part may appear once")
    _choice("hidden_act", cfg.hidden_act, tuple(ACTIVATIONS))
    _choice("mask", cfg.mask, MASKS)
    _choice("layernorm_positioning", cfg.layernorm_positioning, LAYERNORM_POSITIONS)
    _choice("pooling", cfg.pooling, POOLINGS)
    _choice("kernels", cfg.kernels, KERNEL_CHOICES)
    _choice("data_processor", cfg.data_processor, tuple(DATA_PROCESSORS))
    _choice("synt_type", cfg.synt_type, tuple(SYNTHESIZERS))
    _validate_subword(cfg, SUBENCODERS)
    _validate_ernie(cfg)
    _positive(cfg, "emb_size", "hidden_size", "layers_num", "max_seq_length", "labels_num", "layernorm_eps")
    if cfg.vocab_size < 0:
        raise ConfigError("vocab_size", f"key 'vocab_size' has value {cfg.vocab_size}: must be >= 0 "
                                        "(0: from the vocabulary)")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError("dropout", f"key 'dropout' has value {cfg.dropout}: must be in [0, 1)")

    dual = "dual" in cfg.embedding or cfg.encoder == "dual"
    if dual:
        _validate_dual(cfg)
        return
    if cfg.stream_0 is not None or cfg.stream_1 is not None:
        raise ConfigError("stream_0", "keys 'stream_0'/'stream_1' are set: they need embedding ['dual'] and "
                                      "encoder 'dual'")
    if "word" not in cfg.embedding:
        raise ConfigError("embedding", f"key 'embedding' has value {list(cfg.embedding)}: must include 'word'")
    if cfg.encoder == "transformer":
        _validate_transformer(cfg)
    else:
        for key in ("parameter_sharing", "factorized_embedding_parameterization"):
            if getattr(cfg, key):
                raise ConfigError(key, f"key '{key}' is true: only the transformer encoder supports it "
                                       f"(encoder is '{cfg.encoder}')")
    bidirectional = ENCODERS[cfg.encoder].bidirectional
    if bidirectional and cfg.hidden_size % 2:
        raise ConfigError("hidden_size", f"key 'hidden_size' has value {cfg.hidden_size}: encoder '{cfg.encoder}' "
                                         "splits it between two directions, so it must be even")
    if cfg.encoder in ("gatedcnn", "cnn", "rcnn", "crnn"):
        _positive(cfg, "kernel_size")
    if cfg.encoder == "gatedcnn":
        _positive(cfg, "block_size")
        if (cfg.layers_num - 1) % cfg.block_size:
            raise ConfigError("layers_num", f"key 'layers_num' has value {cfg.layers_num}: gatedcnn needs "
                                            f"layers_num - 1 divisible by block_size ({cfg.block_size})")
    if cfg.encoder in ("attn", "synt"):
        _validate_attention(cfg)
    if "bilm" in cfg.target and not bidirectional:
        legal = [name for name, entry in ENCODERS.items() if entry.bidirectional]
        raise ConfigError("target", f"key 'target' has 'bilm': it needs a bidirectional encoder ({', '.join(legal)}), "
                                    f"not '{cfg.encoder}'")
    _validate_direction(cfg, ENCODERS)
    if cfg.tie_weights and cfg.target:  # without a target there is nothing to tie (a fine-tuning body)
        _validate_tie(cfg)


def _validate_ernie(cfg: ModelConfig) -> None:
    """ERNIE 2.0 (issue 27): the task embedding's ids and its heads' class counts."""
    if "task" in cfg.embedding:
        _positive(cfg, "task_types_num")
        if not 0 <= cfg.task_id < cfg.task_types_num:
            raise ConfigError("task_id", f"key 'task_id' has value {cfg.task_id}: must be in [0, task_types_num "
                                         f"({cfg.task_types_num}))")
    if "sentence_reorder" in cfg.target and not 1 <= cfg.sentence_reorder_segments <= 5:
        raise ConfigError("sentence_reorder_segments", "key 'sentence_reorder_segments' has value "
                          f"{cfg.sentence_reorder_segments}: must be in [1, 5] (5 segments: 153 classes)")
    if "discourse" in cfg.target and cfg.discourse_labels_num < 2:
        raise ConfigError("discourse_labels_num", f"key 'discourse_labels_num' has value {cfg.discourse_labels_num}: "
                          "the discourse target needs at least 2 classes (it comes from the dataset's marker list)")


def _validate_transformer(cfg: ModelConfig) -> None:
    _positive(cfg, "heads_num", "feedforward_size")
    if "lm" in cfg.target and cfg.mask != "causal":
        # a fully visible transformer sees the next token it is asked to predict: the loss falls to
        # zero and the model learns nothing a generator can use (UER-py's GPT examples set the mask)
        raise ConfigError("target", f"key 'target' has 'lm' but the transformer's mask is '{cfg.mask}': every "
                                    "position would see the token it predicts; use --mask causal or --encoder gpt "
                                    "(GPT-2: --encoder gpt2, or --config_path gpt2/small)")
    if cfg.hidden_size % cfg.heads_num:
        raise ConfigError("heads_num", f"key 'heads_num' has value {cfg.heads_num}: it must divide hidden_size "
                         f"({cfg.hidden_size})")
    if not cfg.factorized_embedding_parameterization and cfg.emb_size != cfg.hidden_size:
        raise ConfigError("emb_size", f"key 'emb_size' has value {cfg.emb_size}: must equal hidden_size "
                                      f"({cfg.hidden_size}) unless factorized_embedding_parameterization is true")


def _validate_subword(cfg: ModelConfig, subencoders: Mapping[str, Any]) -> None:
    from uer_ds.registry import SUBWORD_TYPES

    _choice("subword_type", cfg.subword_type, SUBWORD_TYPES)
    _choice("subencoder", cfg.subencoder, tuple(subencoders))
    _positive(cfg, "sub_layers_num")
    if cfg.sub_vocab_size < 0:
        raise ConfigError("sub_vocab_size", f"key 'sub_vocab_size' has value {cfg.sub_vocab_size}: must be >= 0 (0: from the "
                         "sub-vocabulary)")
    if cfg.subword_type != "none" and cfg.subencoder == "cnn":
        _positive(cfg, "kernel_size")
    if cfg.subword_type != "none" and ("dual" in cfg.embedding or cfg.encoder == "dual"):
        raise ConfigError("subword_type", f"key 'subword_type' has value '{cfg.subword_type}': dual (siamese) models take no "
                         "subword features")


def _validate_attention(cfg: ModelConfig) -> None:
    """attn and synt: heads split hidden_size; no emb -> hidden projection."""
    _positive(cfg, "heads_num")
    if cfg.encoder == "synt":
        _positive(cfg, "feedforward_size")
    if cfg.hidden_size % cfg.heads_num:
        raise ConfigError("heads_num", f"key 'heads_num' has value {cfg.heads_num}: it must divide hidden_size "
                                       f"({cfg.hidden_size})")
    if cfg.emb_size != cfg.hidden_size:
        raise ConfigError("emb_size", f"key 'emb_size' has value {cfg.emb_size}: encoder '{cfg.encoder}' needs it equal to "
                         f"hidden_size ({cfg.hidden_size})")


def is_causal(cfg: ModelConfig) -> bool:
    """Whether each position of the encoder sees only itself and earlier positions: the encoder's
    registry entry says, or, where it leaves it to the mask (transformer, attn, synt), the config's mask."""
    from uer_ds.registry import ENCODERS

    causal = ENCODERS[cfg.encoder].causal
    return cfg.mask == "causal" if causal is None else bool(causal)


def _validate_direction(cfg: ModelConfig, encoders: Mapping[str, Any]) -> None:
    """Targets that read what the encoder cannot give: lm needs a causal encoder; sp, and cls with
    `first` pooling, read position 0, which under a causal encoder sees only [CLS]."""
    causal = is_causal(cfg)
    seen = "sees only earlier positions" if causal else "sees both sides"
    if "lm" in cfg.target and not causal:
        legal = [n for n, entry in encoders.items() if entry.causal is True]
        masked = [n for n, entry in encoders.items() if entry.causal is None]
        by_mask = encoders[cfg.encoder].causal is None
        raise ConfigError("target", f"key 'target' has 'lm', which predicts each next token: it needs a causal encoder "
                         f"({', '.join(legal)}, or {'/'.join(masked)} with mask 'causal'); encoder "
                         f"'{cfg.encoder}'{' with mask ' + repr(cfg.mask) if by_mask else ''} {seen}")
    if causal and ("sp" in cfg.target or ("cls" in cfg.target and cfg.pooling == "first")):
        what = "'sp'" if "sp" in cfg.target else "'cls' with pooling 'first'"
        raise ConfigError("target", f"key 'target' has {what}, which reads position 0: encoder '{cfg.encoder}' is causal, so "
                         "position 0 sees only [CLS] (use a bidirectional encoder; for cls, pooling mean, max or last)")


def _validate_tie(cfg: ModelConfig) -> None:
    output_width = {"mlm": cfg.emb_size if cfg.factorized_embedding_parameterization else cfg.hidden_size,
                    "lm": cfg.hidden_size, "bilm": cfg.hidden_size // 2, "s2s": cfg.hidden_size}
    tied = [t for t in cfg.target if t in output_width]
    if not tied:
        raise ConfigError("tie_weights", f"key 'tie_weights' is true: target {list(cfg.target)} has no output over "
                                         "the vocabulary (mlm, lm, bilm, s2s) to tie")
    for name in tied:
        if output_width[name] != cfg.emb_size:
            raise ConfigError("tie_weights", f"key 'tie_weights' is true: the {name} output width "
                                             f"({output_width[name]}) must equal emb_size ({cfg.emb_size}) to share "
                                             "the word embedding")


def _validate_dual(cfg: ModelConfig) -> None:
    if tuple(cfg.embedding) != ("dual",) or cfg.encoder != "dual":
        raise ConfigError("embedding", f"keys 'embedding' ({list(cfg.embedding)}) and 'encoder' ('{cfg.encoder}'): "
                         "a dual model needs embedding ['dual'] and encoder 'dual' together")
    for key in ("stream_0", "stream_1"):
        stream = getattr(cfg, key)
        if stream is None:
            raise ConfigError(key, f"key '{key}' is missing: a dual model needs stream_0 and stream_1")
        if "dual" in stream.embedding or stream.encoder == "dual":
            raise ConfigError(key, f"key '{key}': a stream cannot itself be dual")
    if cfg.tie_weights and cfg.stream_0 != cfg.stream_1:
        raise ConfigError("tie_weights", "key 'tie_weights' is true: the two streams share weights, so stream_0 and "
                                         "stream_1 must be equal")
    if cfg.target:
        raise ConfigError("target", f"key 'target' has value {list(cfg.target)}: a dual model has no pre-training "
                                    "target (it is fine-tuned by the classifier task)")


# ---- command line -----------------------------------------------------------------------------
def add_model_config_arguments(parser: argparse.ArgumentParser, exclude: Sequence[str] = (),
                               config_default: Optional[str] = "bert/base") -> None:
    """`--config_path` plus one `--<key>` per ModelConfig field; given flags override the JSON.

    Both `--key value` and `--key=value` work (argparse); lists take `--target mlm sp` or
    `--target=mlm,sp`; booleans take `--tie_weights`, `--tie_weights true|false`.  UER-py's names
    (uer_ds.compat.MODEL_ALIASES: `--encoder bert`, `--target albert`, `--bidirectional`) are accepted
    and listed in each flag's help.  `exclude` names keys a command defines itself.
    """
    from uer_ds.compat import BIDIRECTIONAL, add_absent_features, add_flag_aliases, alias_names

    group = parser.add_argument_group("model config (flags override the JSON)")
    default_text = f"default: {config_default}" if config_default else "default: the model's own config.json"
    group.add_argument("--config_path", default=config_default,
                       help=f"UER JSON model config, or a shipped name such as bert/tiny ({default_text})")
    for f in dataclasses.fields(ModelConfig):
        hint = _HINTS[f.name]
        if get_origin(hint) is Union or f.name in exclude:
            continue  # stream configs come from the JSON only
        text = f.metadata.get("help")
        if f.name in _REGISTRY_KEYS:
            text += ": " + ", ".join(_registry_names(f.name))
        if alias_names(f.name):
            text += f" (UER-py's names: {', '.join(alias_names(f.name))})"
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "help": text}
        if get_origin(hint) is tuple:
            kwargs.update(nargs="+", metavar="NAME")
        elif hint is bool:
            kwargs.update(nargs="?", const="true", metavar="BOOL")
        group.add_argument(f"--{f.name}", **kwargs)
    group.add_argument("--bidirectional", nargs="?", const="true", metavar="BOOL", default=argparse.SUPPRESS,
                       help="UER-py's recurrent encoders in both directions: "
                            + ", ".join(f"{k} -> {v}" for k, v in BIDIRECTIONAL.items() if k != v))
    add_flag_aliases(parser, "model")  # UER-py's --subencoder_type (cloze_test.py, generate.py of 2020)
    add_absent_features(parser)


_REGISTRY_KEYS = {"encoder": "ENCODERS", "synt_type": "SYNTHESIZERS", "subencoder": "SUBENCODERS"}


def _registry_names(key: str) -> list[str]:
    """The legal values of a key whose names come from a registry (for --help)."""
    from uer_ds import registry

    return list(getattr(registry, _REGISTRY_KEYS[key]))


def model_config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The model-config flags given on the command line (lists split; `bidirectional` included).  A UER-py
    flag asking for a feature uer_ds does not have (uer_ds.compat.ABSENT_FEATURES) is refused here."""
    from uer_ds.compat import check_absent_features

    check_absent_features(args)
    overrides: dict[str, Any] = {}
    others = getattr(args, "not_model_flags", ())  # the command's own flags named like config keys
    for name in (*_FIELDS, "bidirectional"):
        if getattr(args, name, None) is not None and name not in others:
            value = getattr(args, name)
            if isinstance(value, list):
                value = [part for item in value for part in item.replace(",", " ").split()]
            overrides[name] = value
    return overrides


def model_config_from_args(args: argparse.Namespace, base: Optional[ModelConfig] = None, **extra: Any
                           ) -> ModelConfig:
    """The JSON at args.config_path (or, without one, the config `base`) merged with the flags given (and
    `extra`), validated once."""
    overrides = model_config_overrides(args)
    overrides.update({k: v for k, v in extra.items() if v is not None})
    if getattr(args, "config_path", None) is None and base is not None:
        return ModelConfig.from_dict(base.to_dict(), source="the model's own config", overrides=overrides)
    return ModelConfig.from_json(args.config_path, overrides)


def shipped_config_names() -> list[str]:
    return sorted(str(p.relative_to(SHIPPED_CONFIG_DIR)).removesuffix("_config.json")
                  for p in SHIPPED_CONFIG_DIR.glob("*/*_config.json"))


# ---- training ----------------------------------------------------------------------------------
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (UER-py's flag names).  Engine settings (ZeRO stage, offload, precision,
    pipeline buckets) live in the DeepSpeed JSON; these numbers live here only, and the engine writes
    them into the DeepSpeed dict in one audited function."""

    total_steps: int = _help("optimizer steps to train", default=100000)
    batch_size: int = _help("micro-batch per process (UER-py's batch_size); global batch = batch_size x "
                            "accumulation_steps x data-parallel processes", default=32)
    accumulation_steps: int = _help("micro-batches accumulated per optimizer step", default=1)
    learning_rate: float = _help("peak learning rate", default=1e-4)
    warmup: float = _help("fraction of total_steps spent warming up linearly from 0", default=0.1)
    scheduler: str = _help("after warm-up: linear (to 0), cosine (to 0), constant; constant_with_warmup",
                           default="linear")
    weight_decay: float = _help("AdamW weight decay, applied to matrices and embeddings (p.dim() >= 2)",
                                default=0.01)
    adam_beta1: float = _help("AdamW beta1", default=0.9)
    adam_beta2: float = _help("AdamW beta2", default=0.999)
    adam_eps: float = _help("AdamW epsilon", default=1e-6)
    max_grad_norm: float = _help("gradient clipping by global norm (0: off)", default=1.0)
    seed: int = _help("random seed (weights, masking, data order)", default=7)
    report_steps: int = _help("log metrics every N steps", default=100)
    save_checkpoint_steps: int = _help("save a checkpoint every N steps (and at the end)", default=10000)

    def __post_init__(self) -> None:
        for key in ("total_steps", "batch_size", "accumulation_steps", "report_steps", "save_checkpoint_steps"):
            if getattr(self, key) <= 0:
                raise ValueError(f"--{key} has value {getattr(self, key)}: must be positive")
        if self.learning_rate <= 0:
            raise ValueError(f"--learning_rate has value {self.learning_rate}: must be positive")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"--warmup has value {self.warmup}: must be a fraction in [0, 1)")
        _choice("scheduler", self.scheduler, SCHEDULERS)
        for key in ("weight_decay", "max_grad_norm"):
            if getattr(self, key) < 0:
                raise ValueError(f"--{key} has value {getattr(self, key)}: must be >= 0")
        for key in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ValueError(f"--{key} has value {getattr(self, key)}: must be in [0, 1)")

    @property
    def warmup_steps(self) -> int:
        return int(self.total_steps * self.warmup)


def add_train_config_arguments(parser: argparse.ArgumentParser, exclude: Sequence[str] = (), **defaults: Any) -> None:
    """One `--<field>` per TrainConfig field; `defaults` changes a default (fine-tuning's lr, say);
    `exclude` names fields the command sets itself (fine-tuning derives total_steps from epochs)."""
    group = parser.add_argument_group("training")
    hints = get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in exclude:
            continue
        default = defaults.get(f.name, f.default)
        choices = SCHEDULERS if f.name == "scheduler" else None
        group.add_argument(f"--{f.name}", type=hints[f.name], default=default, choices=choices,
                           help=f"{f.metadata['help']} (default {default})")
    from uer_ds.compat import add_flag_aliases

    add_flag_aliases(parser, "train")  # UER-py's --beta1 / --beta2


def train_config_from_args(args: argparse.Namespace, **values: Any) -> TrainConfig:
    """The TrainConfig of the flags; `values` gives the fields the command excluded from its flags."""
    return TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                          if f.name not in values}, **values)


__all__ = ["ConfigError", "ConfigNote", "ModelConfig", "TrainConfig", "add_model_config_arguments",
           "add_train_config_arguments",
           "model_config_from_args", "model_config_overrides", "resolve_config_path", "shipped_config_names",
           "train_config_from_args"]
