"""What a checkpoint holds and which model config it fits (UER-py's scripts/check_model.py, which only
tried a strict load against one config).

Reads a uer_ds model directory, a uer_ds training checkpoint (or one of its global_step<N> tags), a
Hugging Face model directory, or a weight file (.safetensors / .bin; uer_ds or UER-py/TencentPretrain
key names).  Lists every tensor (name, shape, dtype, elements), names the key scheme, and checks the
tensors against a model config: the one given, the directory's own, or else every shipped config in
turn (vocab_size, and max_seq_length where a position embedding says it, taken from the tensors).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional, Union

import torch

from uer_ds.config import ModelConfig, resolve_config_path, shipped_config_names

PathLike = Union[str, os.PathLike]
SCHEMES = ("uer_ds", "uer", "hf")


@dataclass
class Contents:
    tensors: dict[str, torch.Tensor]
    scheme: str                      # uer_ds, uer (UER-py/TencentPretrain) or hf
    config: Optional[ModelConfig]    # the checkpoint's own config, where it has one
    hf_type: Optional[str] = None
    heads: tuple[str, ...] = ()      # a fine-tuned task model's heads (task.json): target.<head>.* keys
    config_source: str = "its own config"  # where `config` came from


@dataclass
class Fit:
    config: str
    ok: bool
    problems: list[str] = field(default_factory=list)


def read_contents(path: PathLike) -> Contents:
    """The tensors at `path` as stored (keys as the file names them), their scheme and own config; what
    the path is, the resolver (uer_ds.convert.resolve) says."""
    from uer_ds.convert.resolve import resolve_model

    source = resolve_model(path, "--load_model_path")
    tensors = source.state()
    if source.kind == "hf":
        return Contents(tensors, "hf", None, source.hf_type)
    own = f"{source.config_file} (its own)" if source.config_file is not None else "its own config"
    if source.kind == "uer":
        return Contents(tensors, "uer", source.own_config(), config_source=own)
    heads = tuple(source.task_info().get("heads", {})) if source.kind == "task" else \
        _task_heads(tensors) if source.kind == "weights" else ()
    return Contents(tensors, "uer_ds", source.own_config(), heads=heads, config_source=own)


def _task_heads(tensors: dict[str, torch.Tensor]) -> tuple[str, ...]:
    """Names under target.* that are no pre-training target: a fine-tuned model's task heads."""
    from uer_ds.models.targets import TARGETS

    names = dict.fromkeys(k.split(".")[1] for k in tensors if k.startswith("target.") and k.count(".") >= 2)
    return tuple(n for n in names if n not in TARGETS)


def _fit_uer_ds(tensors: dict[str, torch.Tensor], cfg: ModelConfig) -> list[str]:
    """Problems of loading `tensors` (uer_ds keys) into the model of `cfg`, strictly; [] when it fits."""
    from uer_ds.models import build_model
    from uer_ds.models.io import aliased_keys

    model = build_model(cfg, device="meta")
    aliases = aliased_keys(model)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in aliases}
    problems = [f"{k}: shape {tuple(v.shape)}, the config needs {own[k]}" for k, v in tensors.items()
                if k in own and tuple(v.shape) != own[k]]
    problems += [f"missing {k} {own[k]}" for k in own if k not in tensors]
    problems += [f"unexpected {k} {tuple(v.shape)}" for k, v in tensors.items() if k not in own and k not in aliases]
    return problems


def _adapted(cfg: ModelConfig, contents: Contents) -> ModelConfig:
    """cfg with the sizes only the tensors know: vocab_size, max_seq_length, targets present, labels."""
    t = contents.tensors
    changes: dict = {}
    word = next((v for k, v in t.items() if k.endswith(("word.embedding.weight", "word_embedding.weight"))), None)
    if word is not None:
        changes["vocab_size"] = word.shape[0]
    pos = next((v for k, v in t.items() if k.endswith(("pos.embedding.weight", "position_embedding.weight"))), None)
    if pos is not None and "pos" in cfg.embedding:
        changes["max_seq_length"] = pos.shape[0]
    if contents.scheme == "uer_ds":
        present = tuple(name for name in cfg.target if any(k.startswith(f"target.{name}.") for k in t))
        changes["target"] = present
        if not present:
            changes["tie_weights"] = cfg.tie_weights and cfg.encoder == "dual"
        if "cls" in present and "target.cls.linear_2.weight" in t:
            changes["labels_num"] = t["target.cls.linear_2.weight"].shape[0]
        sub = t.get("embedding.subword.embedding.weight")
        if sub is not None:
            changes["sub_vocab_size"] = sub.shape[0]
    return cfg.replace(**changes)


def check_fit(contents: Contents, cfg: ModelConfig, name: str) -> Fit:
    try:
        cfg = _adapted(cfg, contents)
    except ValueError as err:
        return Fit(name, False, [f"the tensors' sizes do not make a valid config: {err}"])
    if contents.scheme == "uer_ds":
        tensors = {k: v for k, v in contents.tensors.items()
                   if not k.startswith(tuple(f"target.{h}." for h in contents.heads))}
        try:
            problems = _fit_uer_ds(tensors, cfg)
        except ValueError as err:
            problems = [str(err)]
        return Fit(name, not problems, problems)
    if contents.scheme == "uer":
        from uer_ds.convert.uer import convert_uer_state

        try:
            convert_uer_state(contents.tensors, cfg, name, "uer")
        except ValueError as err:
            return Fit(name, False, [str(err)])
        return Fit(name, True)
    return Fit(name, False, ["a Hugging Face directory: its own config.json describes it (uer-ds convert --from hf)"])


def candidate_configs(contents: Contents, config_path: Optional[PathLike]) -> list[tuple[str, ModelConfig]]:
    """The config given, else the checkpoint's own, else every shipped config."""
    if config_path is not None:
        return [(str(config_path), ModelConfig.from_json(resolve_config_path(config_path)))]
    if contents.config is not None:
        return [(contents.config_source, contents.config)]
    return [(name, ModelConfig.from_json(name)) for name in shipped_config_names()]


def check_model(path: PathLike, config_path: Optional[PathLike] = None) -> tuple[Contents, list[Fit]]:
    """(what the checkpoint holds, how it fits each candidate config)."""
    contents = read_contents(path)
    if contents.scheme == "hf":
        from uer_ds.convert.hf import FAMILIES, read_hf

        if contents.hf_type not in FAMILIES:
            return contents, [Fit(f"Hugging Face {contents.hf_type}", False,
                                  [f"model_type '{contents.hf_type}' is not one of {', '.join(FAMILIES)}"])]
        try:
            ckpt, _ = read_hf(path, contents.hf_type)
        except ValueError as err:
            return contents, [Fit(f"Hugging Face {contents.hf_type}", False, [str(err)])]
        return contents, [Fit(f"Hugging Face {contents.hf_type} -> uer_ds {ckpt.config.encoder}, "
                              f"{ckpt.config.layers_num} layers, hidden {ckpt.config.hidden_size}", True)]
    return contents, [check_fit(contents, cfg, name) for name, cfg in candidate_configs(contents, config_path)]


def format_report(path: PathLike, contents: Contents, fits: list[Fit], limit: int = 0) -> str:
    """The tensor table (the first `limit` rows, 0: all), totals, and the fit of each config."""
    rows = sorted(contents.tensors.items())
    width = max((len(k) for k, _ in rows), default=4)
    lines = [f"{path}: {len(rows)} tensors, {sum(v.numel() for _, v in rows):,} elements, key scheme "
             f"{contents.scheme}" + (f" ({contents.hf_type})" if contents.hf_type else "")
             + (f"; a fine-tuned task model with head(s) {', '.join(contents.heads)}" if contents.heads else ""),
             f"{'name':<{width}}  {'shape':<20} {'dtype':<9} {'elements':>12}"]
    for key, value in rows[: limit or None]:
        lines.append(f"{key:<{width}}  {str(tuple(value.shape)):<20} {str(value.dtype).removeprefix('torch.'):<9} "
                     f"{value.numel():>12,}")
    if limit and len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more (--all lists every tensor)")
    dtypes: dict[str, int] = {}
    for _, value in rows:
        dtypes[str(value.dtype).removeprefix("torch.")] = dtypes.get(str(value.dtype).removeprefix("torch."), 0) + 1
    lines.append("dtypes: " + ", ".join(f"{d} x{n}" for d, n in sorted(dtypes.items())))
    good = [f for f in fits if f.ok]
    if good:
        lines.append("fits: " + ", ".join(f.config for f in good))
    if len(fits) == 1 and not fits[0].ok:
        problems = fits[0].problems
        lines.append(f"does not fit {fits[0].config} ({len(problems)} problem(s)):")
        lines += [f"  {p}" for p in problems[:20]]
        lines += [f"  ... {len(problems) - 20} more"] if len(problems) > 20 else []
    elif not good and contents.scheme == "uer_ds":
        best = min(fits, key=lambda f: len(f.problems))
        lines.append(f"fits none of the {len(fits)} shipped configs; the closest, {best.config}:")
        lines += [f"  {p}" for p in best.problems[:10]]
    elif not good:
        lines.append(f"fits none of the {len(fits)} shipped configs (give the one it was trained with as "
                     "--config_path to see why)")
    return "\n".join(lines)
