"""Model-config flags: one `--<key>` per ModelConfig field (help from the field, choices from the
registries through `uer_ds.config.rules`), and the config a command's flags give."""
from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any, Optional, Sequence, Union, get_origin

from uer_ds.config.model import _FIELDS, _HINTS, ModelConfig, resolve_config_path
from uer_ds.config.rules import REGISTRY_KEYS, VOCAB_OUTPUT_TARGETS, registry_names
from uer_ds.textfile import load_json


def add_model_config_arguments(parser: argparse.ArgumentParser, exclude: Sequence[str] = (),
                               config_default: Optional[str] = "bert/base") -> None:
    """`--config_path` plus one `--<key>` per ModelConfig field; given flags override the JSON.

    Both `--key value` and `--key=value` work (argparse); lists take `--target mlm sp` or
    `--target=mlm,sp`; booleans take `--tie_weights`, `--tie_weights true|false`.  UER-py's names
    (uer_ds.compat.MODEL_ALIASES: `--encoder bert`, `--target albert`, `--bidirectional`) are accepted
    and listed in each flag's help.  `exclude` names keys a command defines itself.
    """
    from uer_ds.compat import BIDIRECTIONAL, alias_names

    group = parser.add_argument_group("model config (flags override the JSON)")
    default_text = f"default: {config_default}" if config_default else "default: the model's own config.json"
    group.add_argument("--config_path", default=config_default,
                       help=f"UER JSON model config, or a shipped name such as bert/tiny ({default_text})")
    for f in dataclasses.fields(ModelConfig):
        hint = _HINTS[f.name]
        if get_origin(hint) is Union or f.name in exclude:
            continue  # stream configs come from the JSON only
        text = f.metadata.get("help")
        if f.name in REGISTRY_KEYS:
            text += ": " + ", ".join(registry_names(f.name))
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


def model_config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The model-config flags given on the command line (lists split; `bidirectional` included)."""
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
    targets = overrides.get("target")
    if targets and "tie_weights" not in overrides and not set(targets) & set(VOCAB_OUTPUT_TARGETS):
        # UER-py's BERT configs tie the MLM output to the word embedding; a target chosen without an output
        # over the vocabulary (--target cls, ERNIE 2.0's) has nothing to tie: the tie is dropped, said once
        # (no target at all, a fine-tuning body, ties nothing either and needs no note: the rules skip it)
        overrides["tie_weights"] = False
        _untie_note(args, base, list(targets))
    if getattr(args, "config_path", None) is None and base is not None:
        return ModelConfig.from_dict(base.to_dict(), source="the model's own config", overrides=overrides)
    return ModelConfig.from_json(args.config_path, overrides)


def _untie_note(args: argparse.Namespace, base: Optional[ModelConfig], targets: list[str]) -> None:
    """Say on rank 0 (standard error) that the config's tie_weights true gave way to `targets`."""
    import sys

    if getattr(args, "config_path", None) is not None:
        values = load_json(resolve_config_path(args.config_path), "config_path")
        tied = isinstance(values, dict) and bool(values.get("tie_weights"))
    else:
        tied = bool(base is not None and base.tie_weights)
    if tied and os.environ.get("RANK", "0") == "0":
        print(f"note: tie_weights false: target {targets} has no output over the vocabulary to tie (the config "
              f"{args.config_path or 'of the model'} ties its MLM output; --tie_weights true refuses)",
              file=sys.stderr, flush=True)


__all__ = ["add_model_config_arguments", "model_config_from_args", "model_config_overrides"]
