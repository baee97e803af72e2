"""The rules a model config must keep, and the one place the config consults the registries.

Every rule names the key, the value and the rule (ConfigError; `uer_ds.config.model` re-words it to
name the flag or file the value came from).  Legal names (embeddings, encoders, targets, activations,
...) and what validation must know of each encoder (causal, bidirectional, convolutional, recurrent,
attention heads without a projection) come from `uer_ds.registry`'s entries, which import nothing: no
second list of them here, and no name lists of encoders.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from uer_ds import registry
from uer_ds.registry import (ACTIVATIONS, DATA_PROCESSORS, EMBEDDINGS, ENCODERS, SUBENCODERS, SUBWORD_TYPES,
                             SYNTHESIZERS, TARGETS)

if TYPE_CHECKING:  # annotations only: the model module imports this one
    from uer_ds.config.model import ModelConfig

MASKS = ("fully_visible", "causal")
LAYERNORM_POSITIONS = ("post", "pre")
POOLINGS = ("first", "last", "mean", "max")
KERNEL_CHOICES = ("auto", "torch", "triton")
VOCAB_OUTPUT_TARGETS = ("mlm", "lm", "bilm", "s2s")  # the targets whose output layer tie_weights may share


class ConfigError(ValueError):
    """A value breaks a rule.  `key` is the field; the message starts "key '<key>' ..." and is
    re-worded by `_located` to name the flag or the file the value came from."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


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


def validate(cfg: ModelConfig) -> None:
    """Every rule of a model config (ModelConfig.__post_init__ calls it): ConfigError on the first broken one."""
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
        if cfg.attention_head_size:
            raise ConfigError("attention_head_size", f"key 'attention_head_size' has value {cfg.attention_head_size}: "
                                                     f"only the transformer encoder supports it (encoder is "
                                                     f"'{cfg.encoder}')")
        for key in ("parameter_sharing", "factorized_embedding_parameterization"):
            if getattr(cfg, key):
                raise ConfigError(key, f"key '{key}' is true: only the transformer encoder supports it "
                                       f"(encoder is '{cfg.encoder}')")
    bidirectional = ENCODERS[cfg.encoder].bidirectional
    if bidirectional and cfg.hidden_size % 2:
        raise ConfigError("hidden_size", f"key 'hidden_size' has value {cfg.hidden_size}: encoder '{cfg.encoder}' "
                                         "splits it between two directions, so it must be even")
    if ENCODERS[cfg.encoder].convolutional:
        _positive(cfg, "kernel_size")
    if cfg.encoder == "gatedcnn":
        _positive(cfg, "block_size")
        if (cfg.layers_num - 1) % cfg.block_size:
            raise ConfigError("layers_num", f"key 'layers_num' has value {cfg.layers_num}: gatedcnn needs "
                                            f"layers_num - 1 divisible by block_size ({cfg.block_size})")
    if ENCODERS[cfg.encoder].attention_heads:
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
    _validate_head_size(cfg)
    if not cfg.factorized_embedding_parameterization and cfg.emb_size != cfg.hidden_size:
        raise ConfigError("emb_size", f"key 'emb_size' has value {cfg.emb_size}: must equal hidden_size "
                                      f"({cfg.hidden_size}) unless factorized_embedding_parameterization is true")


def _validate_head_size(cfg: ModelConfig) -> None:
    """attention_head_size 0: heads_num splits hidden_size; else each head is that wide and the heads together
    may be narrower than hidden_size (a width-pruned model), never wider."""
    if cfg.attention_head_size < 0:
        raise ConfigError("attention_head_size", f"key 'attention_head_size' has value {cfg.attention_head_size}: "
                                                 "must be >= 0 (0: hidden_size // heads_num)")
    if cfg.attention_head_size == 0:
        if cfg.hidden_size % cfg.heads_num:
            raise ConfigError("heads_num", f"key 'heads_num' has value {cfg.heads_num}: it must divide hidden_size "
                             f"({cfg.hidden_size})")
        return
    if cfg.heads_num * cfg.attention_head_size > cfg.hidden_size:
        raise ConfigError("attention_head_size", f"key 'attention_head_size' has value {cfg.attention_head_size}: "
                          f"heads_num ({cfg.heads_num}) * attention_head_size must be at most hidden_size "
                          f"({cfg.hidden_size})")


def _validate_subword(cfg: ModelConfig, subencoders: Mapping[str, Any]) -> None:
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
    tied = [t for t in cfg.target if t in output_width]  # = VOCAB_OUTPUT_TARGETS
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


REGISTRY_KEYS = {"encoder": "ENCODERS", "synt_type": "SYNTHESIZERS", "subencoder": "SUBENCODERS"}


def registry_names(key: str) -> list[str]:
    """The legal values of a key whose names come from a registry (for --help)."""
    return list(getattr(registry, REGISTRY_KEYS[key]))


__all__ = ["ConfigError", "KERNEL_CHOICES", "LAYERNORM_POSITIONS", "MASKS", "POOLINGS", "REGISTRY_KEYS",
           "VOCAB_OUTPUT_TARGETS", "is_causal", "registry_names", "validate"]
