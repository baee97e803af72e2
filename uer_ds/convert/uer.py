"""UER-py and TencentPretrain checkpoints (a `torch.save`d state dict, `.bin`) <-> uer_ds.

Both projects name parameters after their modules, and uer_ds keeps their module tree, so the table is
derived from our model for a given config by renaming (checked against dbiir/UER-py and
Tencent/TencentPretrain: uer/layers/{layer_norm,multi_headed_attn,transformer}.py,
uer/encoders/transformer_encoder.py, uer/targets/{mlm,sp,lm}_target.py, uer/models/model.py and
scripts/convert_{bert,gpt2,albert}_from_huggingface_to_uer.py, and the same files of TencentPretrain):

- LayerNorm parameters are `gamma` / `beta` (ours `weight` / `bias`);
- attention is `self_attn.linear_layers.{0,1,2}` (query, key, value) and `self_attn.final_linear`;
- with parameter_sharing the one layer is `encoder.transformer.*`, without an index;
- tied output matrices are saved under both names (PyTorch's state_dict repeats a shared parameter).

Two layouts exist.  "current": UER-py since July 2023 (PRs #366 and #368) and TencentPretrain, with
`embedding.word.embedding.weight` and `target.mlm.linear_1.weight`.  "legacy": UER-py before that (and
the models it published), with `embedding.word_embedding.weight`, `embedding.position_embedding`,
`embedding.segment_embedding`, and one flat target namespace: `target.mlm_linear_1`,
`target.layer_norm` (the MLM head's), `target.mlm_linear_2`, `target.sp_linear_{1,2}`,
`target.output_layer`.  Reading detects the layout; writing produces the current one.

The files hold no model config: `--config_path` gives the UER JSON config, and vocab_size comes from
the word embedding.  UER-py's LayerNorm divides by (unbiased std + eps) where uer_ds (like Hugging Face)
uses sqrt(biased variance + eps): the weights carry over exactly, the outputs differ by about
1 / (2 * hidden_size) relative (6.5e-4 at hidden_size 768), as they do for UER-py's own HF conversions.
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Optional, Union

import torch

from uer_ds.config import ModelConfig
from uer_ds.convert.rules import Checkpoint, Report, Rule, expected_shapes, new_file, to_ours, to_theirs
from uer_ds.convert.weights import read_weight_file
from uer_ds.models.layers import LayerNorm

PathLike = Union[str, os.PathLike]

# Infixes inside a key: ours -> UER's.
_ATTENTION = {".self_attn.query.": ".self_attn.linear_layers.0.", ".self_attn.key.": ".self_attn.linear_layers.1.",
              ".self_attn.value.": ".self_attn.linear_layers.2.", ".self_attn.output.": ".self_attn.final_linear."}
# Key prefixes of the legacy layout: ours -> UER-py before July 2023.
_LEGACY = {"embedding.word.embedding.": "embedding.word_embedding.",
           "embedding.pos.embedding.": "embedding.position_embedding.",
           "embedding.seg.embedding.": "embedding.segment_embedding.",
           "target.mlm.linear_1.": "target.mlm_linear_1.", "target.mlm.linear_2.": "target.mlm_linear_2.",
           "target.mlm.layer_norm.": "target.layer_norm.", "target.sp.linear_1.": "target.sp_linear_1.",
           "target.sp.linear_2.": "target.sp_linear_2.", "target.lm.output_layer.": "target.output_layer."}
LAYOUTS = ("current", "legacy")
WORD_KEY = {"current": "embedding.word.embedding.weight", "legacy": "embedding.word_embedding.weight"}
TARGETS = ("mlm", "sp", "lm")  # the heads whose UER names the tables know
# encoders whose UER-py module tree is ours (UER-py's `lstm --bidirectional` is our bilstm; its own
# "bilstm", two one-way stacks under encoder.rnn_forward / rnn_backward, is another model)
ENCODERS = ("transformer", "lstm", "gru", "bilstm", "bigru")
# keys only UER-py/TencentPretrain files have (ours name LayerNorm weight/bias, attention query/key/...)
UER_MARKERS = (".gamma", ".beta", ".linear_layers.", ".final_linear.", "embedding.word_embedding.",
               "output_layer_1.", "output_layers_1.", "crf.start_transitions")
# UER-py's fine-tuning heads (finetune/run_*.py) -> the uer_ds task heads with the same layers:
# kind -> {their key prefix: our key prefix inside the head (target.<head>.)}
UER_HEADS: dict[str, dict[str, str]] = {
    # run_classifier.py, run_dbqa.py, run_classifier_multi_label.py: pooling -> output_layer_1 -> tanh ->
    # output_layer_2
    "classifier": {"output_layer_1.": "linear_1.", "output_layer_2.": "linear_2."},
    # run_ner.py: output_layer per token; with --crf_target, torchcrf's CRF(batch_first=True)
    "tagger": {"output_layer.": "output_layer.", "crf.start_transitions": "crf.start",
               "crf.end_transitions": "crf.end", "crf.transitions": "crf.transitions"},
    # run_cmrc.py: start and end logits from one linear layer
    "span": {"output_layer.": "output_layer."},
}


def uer_key(ours: str, norms: set[str], shared: bool, layout: str) -> str:
    """Our parameter name -> UER's, for the given layout."""
    module, param = ours.rsplit(".", 1)
    if module in norms:
        param = {"weight": "gamma", "bias": "beta"}[param]
    key = f"{module}.{param}"
    for a, b in _ATTENTION.items():
        key = key.replace(a, b)
    if shared and key.startswith("encoder.transformer.0."):
        key = "encoder.transformer." + key[len("encoder.transformer.0."):]
    if layout == "legacy":
        for a, b in _LEGACY.items():
            if key.startswith(a):
                key = b + key[len(a):]
    return key


def uer_table(cfg: ModelConfig, layout: str) -> tuple[list[Rule], dict[str, str]]:
    """(rules, {tied UER key: the UER key it repeats}) for a model config (encoders in ENCODERS)."""
    from uer_ds.models import build_model
    from uer_ds.models.io import aliased_keys

    if cfg.encoder not in ENCODERS or any(t not in TARGETS for t in cfg.target):
        raise ValueError(f"UER tables cover encoders {', '.join(ENCODERS)} with targets {', '.join(TARGETS)}; the "
                         f"config has encoder '{cfg.encoder}', targets {list(cfg.target)}")
    model = build_model(cfg, device="meta")
    norms = {name for name, module in model.named_modules() if isinstance(module, LayerNorm)}
    aliases = aliased_keys(model)

    def name(key: str) -> str:
        return uer_key(key, norms, cfg.parameter_sharing, layout)

    rules = [Rule((name(k),), (k,)) for k in model.state_dict() if k not in aliases]
    return rules, {name(alias): name(canonical) for alias, canonical in aliases.items()}


def detect_layout(state: dict[str, torch.Tensor], source: str) -> str:
    for layout in LAYOUTS:
        if WORD_KEY[layout] in state:
            return layout
    raise ValueError(f"{source}: not a UER-py/TencentPretrain transformer checkpoint: neither "
                     f"{' nor '.join(repr(k) for k in WORD_KEY.values())} is in it")


def _drop_absent_targets(cfg: ModelConfig, state: dict, layout: str, report: Report) -> ModelConfig:
    """A config's target whose keys are all absent (a `--type mlm` conversion has no sp head) is dropped,
    and the report says so; a target with only some of its keys fails later, naming them."""
    keep = []
    for target in cfg.target:
        ours = (f"target.{target}.", f"target.{target}_") if layout == "legacy" else (f"target.{target}.",)
        if target == "mlm" and layout == "legacy":
            ours += ("target.layer_norm.",)
        if target == "lm" and layout == "legacy":
            ours += ("target.output_layer.",)
        if any(k.startswith(ours) for k in state):
            keep.append(target)
        else:
            report.notes.append(f"the config's target '{target}' has no weights in the checkpoint: converted "
                                "without it")
    if len(keep) == len(cfg.target):
        return cfg
    tied_left = any(t in ("mlm", "lm", "bilm") for t in keep)  # tie_weights means nothing without them
    return cfg.replace(target=tuple(keep), tie_weights=cfg.tie_weights and tied_left)


def looks_like_uer(state: dict[str, torch.Tensor]) -> bool:
    """True for a UER-py/TencentPretrain state dict (LayerNorm gamma/beta, attention linear_layers, the
    legacy embedding names, UER-py's fine-tuning heads); False for uer_ds's own keys."""
    return any(marker in key for key in state for marker in UER_MARKERS)


def _check_encoder_layout(state: dict[str, torch.Tensor], source: str) -> None:
    if any(k.startswith(("encoder.rnn_forward.", "encoder.rnn_backward.")) for k in state):
        raise ValueError(f"{source}: UER-py's bilstm/bigru encoder (two one-way stacks, encoder.rnn_forward / "
                         "rnn_backward) has no uer_ds counterpart; uer_ds's bilstm is one bidirectional LSTM, UER-py's "
                         "`--encoder lstm --bidirectional`")


def convert_uer_state(state: dict[str, torch.Tensor], cfg: ModelConfig, source: str,
                      fmt: str = "uer") -> tuple[Checkpoint, Report]:
    """A UER-py/TencentPretrain state dict (either layout) for model config `cfg` -> our checkpoint.

    vocab_size 0 is taken from the word embedding; a target of `cfg` without weights in the file is
    dropped (and reported); keys the table does not use are listed in the report (fine-tuning heads,
    other targets).  Raises naming missing keys and shape mismatches.
    """
    layout = detect_layout(state, source)
    _check_encoder_layout(state, source)
    if cfg.vocab_size == 0:
        cfg = cfg.replace(vocab_size=state[WORD_KEY[layout]].shape[0])
    report = Report(notes=[f"read {fmt} checkpoint, {layout} layout"])
    cfg = _drop_absent_targets(cfg, state, layout, report)
    rules, tied = uer_table(cfg, layout)
    ours, _, used = to_ours(state, rules, expected_shapes(cfg), source)
    for alias, canonical in tied.items():
        if alias in state:
            if not torch.equal(state[alias], state[canonical]):
                raise ValueError(f"{source}: the config ties weights (tie_weights true) but '{alias}' differs from "
                                 f"'{canonical}'; set tie_weights to false in the model config")
            used.add(alias)
    report.converted = len(ours)
    report.unused_input = sorted(k for k in state if k not in used)
    return Checkpoint(cfg, ours), report


def uer_head_state(state: dict[str, torch.Tensor], kind: str, head: str) -> dict[str, torch.Tensor]:
    """A UER-py fine-tuning head's tensors under our names (`target.<head>.*`); {} when absent."""
    out = {}
    for theirs, ours in UER_HEADS[kind].items():
        for key, tensor in state.items():
            if key == theirs or (theirs.endswith(".") and key.startswith(theirs)):
                out[f"target.{head}.{ours}{key[len(theirs):]}"] = tensor
    return out


def read_uer(input_path: PathLike, config_path: Optional[Union[PathLike, ModelConfig]],
             fmt: str = "uer") -> tuple[Checkpoint, Report]:
    """A UER-py/TencentPretrain state dict file + its UER JSON model config (a path, or a ModelConfig
    already merged with command-line flags) -> (checkpoint, report)."""
    if config_path is None:
        raise ValueError(f"--from {fmt} needs --config_path: the checkpoint file holds no model config "
                         "(give the UER JSON config it was trained with, or a shipped name such as bert/base)")
    path = Path(input_path)
    if path.is_dir():
        raise ValueError(f"--input {path}: a directory; --from {fmt} reads a state dict file (model.bin)")
    cfg = config_path if isinstance(config_path, ModelConfig) else ModelConfig.from_json(config_path)
    return convert_uer_state(read_weight_file(path), cfg, str(path), fmt)


# ---- computing as UER-py does ----------------------------------------------------------------------
class UerLayerNorm(LayerNorm):
    """UER-py's and TencentPretrain's LayerNorm (uer/layers/layer_norm.py, `normal`):
    y = weight * (x - mean) / (std + eps) + bias, with std the unbiased (n - 1) standard deviation, where
    uer_ds (and Hugging Face) divide by sqrt(biased variance + eps).  Same parameters; (..., H) -> (..., H)."""

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        if residual is not None:
            x = x + residual
        centred = x - x.mean(-1, keepdim=True)
        return self.weight * centred / (x.std(-1, keepdim=True) + self.eps) + self.bias


def use_uer_layer_norm(model: torch.nn.Module) -> torch.nn.Module:
    """Swap every LayerNorm of `model` for UerLayerNorm (sharing its parameters), so a UER-py checkpoint
    gives UER-py's outputs (within float rounding) instead of moving by ~1/(2 x hidden_size).  For
    inference; training keeps the standard (fusable) LayerNorm."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is LayerNorm:
                swapped = UerLayerNorm.__new__(UerLayerNorm)
                swapped.__dict__.update(child.__dict__)  # same parameters, eps and kernel switch
                setattr(parent, name, swapped)
    return model


def uer_config_path(output: Path) -> Path:
    """Where `--to uer` writes the model config: beside the .bin, `<stem>_config.json`."""
    return output.with_name(f"{output.stem if output.suffix == '.bin' else output.name}_config.json")


def write_uer(ckpt: Checkpoint, output_path: PathLike, layout: str = "current") -> Report:
    """Our checkpoint -> a UER state dict (.bin, torch.save; what UER-py loads) + its UER JSON config."""
    output = Path(output_path)
    rules, tied = uer_table(ckpt.config, layout)
    theirs, _ = to_theirs(ckpt, rules)
    for alias, canonical in tied.items():
        theirs[alias] = theirs[canonical]  # UER-py's state_dict holds a tied matrix under both names
    ordered = OrderedDict(sorted(theirs.items()))
    config = {k: v for k, v in ckpt.config.to_dict().items() if k != "kernels"}  # a uer_ds-only switch
    if not config.get("attention_head_size"):
        # 0 means "hidden_size // heads_num" here only: TencentPretrain reads the key whenever it is present
        config.pop("attention_head_size", None)
    config_out = uer_config_path(output)
    with new_file(output) as tmp, new_file(config_out) as tmp_config:
        torch.save(ordered, tmp)
        tmp_config.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return Report(converted=len(theirs), not_carried=sorted(ckpt.extra), written=[str(output), str(config_out)],
                  notes=[f"wrote a UER-py checkpoint ({layout} layout) and its model config {config_out}"])
