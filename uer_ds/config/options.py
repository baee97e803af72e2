"""Flags generated from an options dataclass: one `--<field>` per field, the field's help as the `--help`
text (as TrainConfig's flags are made), so a command's options are typed values, not an argparse Namespace.

Field metadata read here (all optional beside "help"): "choices", "nargs" (a list field), "metavar",
"flags" (extra spellings, UER-py's), "required".  A `bool` field is a store_true switch (Optional[bool]:
None when not given); `Optional[X]` takes X; `list[X]` takes X per value.  `options_from_args` reads the fields back from the parsed flags.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Optional, Sequence, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


def option(text: str, **kwargs: Any) -> Any:
    """A dataclass field whose `text` becomes its `--help`; metadata keys (choices, nargs, metavar, flags,
    required) are taken from kwargs, the rest (default, default_factory) go to dataclasses.field."""
    meta = {"help": text, **{k: kwargs.pop(k) for k in ("choices", "nargs", "metavar", "flags", "required")
                             if k in kwargs}}
    return dataclasses.field(metadata=meta, **kwargs)


def _value_type(hint: Any) -> Any:
    """X of Optional[X]; the element type of list[X] / tuple[X, ...]."""
    if get_origin(hint) is Union:
        hint = next(a for a in get_args(hint) if a is not type(None))
    if get_origin(hint) in (list, tuple):
        return get_args(hint)[0]
    return hint


def add_option_arguments(parser: Union[argparse.ArgumentParser, argparse._ArgumentGroup], cls: type,
                         exclude: Sequence[str] = (), defaults: Optional[dict[str, Any]] = None,
                         helps: Optional[dict[str, str]] = None, choices: Optional[dict[str, Sequence]] = None
                         ) -> None:
    """One `--<field>` per field of the dataclass `cls` (those in `exclude` left out); `defaults`, `helps`
    and `choices` replace a field's default, help text or choices for one command."""
    defaults, helps, choices = defaults or {}, helps or {}, choices or {}
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        meta, hint = f.metadata, hints[f.name]
        own = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
        default = defaults.get(f.name, None if own is dataclasses.MISSING else own)
        kwargs: dict[str, Any] = {"help": helps.get(f.name, meta["help"])}
        if _value_type(hint) is bool:  # a switch; Optional[bool]: None when not given
            kwargs.update(action="store_true", default=default)
        else:
            kwargs.update(type=_value_type(hint), default=default)
            for key in ("choices", "nargs", "metavar"):
                if key in meta:
                    kwargs[key] = meta[key]
            if f.name in choices:
                kwargs["choices"] = tuple(choices[f.name])
        if meta.get("required") and f.name not in defaults:  # a command that gives a default makes it optional
            kwargs["required"] = True
        parser.add_argument(f"--{f.name}", *meta.get("flags", ()), dest=f.name, **kwargs)


def options_from_args(cls: type[T], args: argparse.Namespace, **values: Any) -> T:
    """The `cls` of the parsed flags; `values` gives fields the command has no flag for (or sets itself).
    A field with no flag on this command and no value keeps its default."""
    flags = vars(args)
    given = {f.name: flags[f.name] for f in dataclasses.fields(cls) if f.name in flags}
    return cls(**{**given, **values})


__all__ = ["add_option_arguments", "option", "options_from_args"]
