"""Model-config flags: one `--<key>` per ModelConfig field (help from the field, choices from the
registries through `uer_ds.config.rules`), and the config a command's flags give."""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Optional, Sequence, Union, get_origin

from uer_ds.config.model import _FIELDS, _HINTS, ModelConfig
from uer_ds.config.rules import REGISTRY_KEYS, registry_names


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
    add_flag_aliases(parser, "model")  # UER-py's --subencoder_type (cloze_test.py, generate.py of 2020)
    add_absent_features(parser)


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


def model_config_from_args(args: argparse.Namespace, base: Optional[ModelConfig] = None,
                           config_path: Optional[str] = None, **extra: Any) -> ModelConfig:
    """The JSON at `config_path` (default args.config_path; or, without one, the config `base`) merged with
    the flags given (and `extra`), validated once."""
    overrides = model_config_overrides(args)
    overrides.update({k: v for k, v in extra.items() if v is not None})
    config_path = config_path or getattr(args, "config_path", None)
    if config_path is None and base is not None:
        return ModelConfig.from_dict(base.to_dict(), source="the model's own config", overrides=overrides)
    return ModelConfig.from_json(config_path, overrides)


__all__ = ["add_model_config_arguments", "model_config_from_args", "model_config_overrides"]
