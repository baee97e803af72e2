"""The model config: a typed, frozen dataclass read from UER-py's JSON model configs unchanged.

Precedence is JSON < command line: `ModelConfig.from_json(path, overrides)` merges the overrides into
the JSON values first and validates the result once (`uer_ds.config.rules`), so a flag can repair a
file and a flag can be rejected for what it combines with.  Every error names the key, the value and
the rule, re-worded here to name the flag or the file the value came from.
"""
from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union, get_origin, get_type_hints

from uer_ds.config.rules import VOCAB_OUTPUT_TARGETS, ConfigError, validate
from uer_ds.textfile import load_json

# Where the configs shipped with the package live; `--config_path bert/tiny` resolves here.
SHIPPED_CONFIG_DIR = Path(__file__).parent.parent / "model_configs"

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
    attention_head_size: int = _help("width of each attention head; 0 means hidden_size // heads_num (TencentPretrain's "
                                     "key; `uer-ds prune` sets it, as heads_num * attention_head_size may then be "
                                     "less than hidden_size)", default=0)
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
        validate(self)

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

    @property
    def head_size(self) -> int:
        """The width of one attention head: attention_head_size, or hidden_size // heads_num when that is 0."""
        return self.attention_head_size or self.hidden_size // max(self.heads_num, 1)

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
    if targets and not any(t in VOCAB_OUTPUT_TARGETS for t in targets):
        merged["tie_weights"] = False
        warnings.warn(ConfigNote(f"{source} has tie_weights true, but target {targets} has no output over the "
                                 f"vocabulary ({', '.join(VOCAB_OUTPUT_TARGETS)}) to tie: tie_weights off"),
                      stacklevel=3)


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


def shipped_config_names() -> list[str]:
    return sorted(str(p.relative_to(SHIPPED_CONFIG_DIR)).removesuffix("_config.json")
                  for p in SHIPPED_CONFIG_DIR.glob("*/*_config.json"))


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


__all__ = ["ConfigNote", "ModelConfig", "SHIPPED_CONFIG_DIR", "UER_DEFAULT_CONFIG", "resolve_config_path",
           "shipped_config_names"]
