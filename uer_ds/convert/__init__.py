"""Checkpoint conversion between uer_ds and other formats.

Every conversion reads its input into one in-memory Checkpoint (our config, our state dict, extras)
and writes that out, so READERS x WRITERS give the conversion matrix; CONVERSIONS maps (from, to) to
a function(input, output, family, config_path=None) -> Report, and `uer-ds convert` derives its
choices from it.  The input is recognised by the one resolver (convert.resolve.resolve_model), which
every command that takes a model calls; `--from` must agree with what it finds there.
"""
from __future__ import annotations

import functools
import os
from typing import Callable, Optional, Union

from uer_ds.config import ModelConfig
from uer_ds.convert.hf import FAMILIES, read_hf, write_hf
from uer_ds.convert.native import write_uer_ds
from uer_ds.convert.resolve import KINDS, MODEL_KINDS, ModelSource, format_hint, resolve_model
from uer_ds.convert.rules import Checkpoint, Report
from uer_ds.convert.uer import convert_uer_state, write_uer

PathLike = Union[str, os.PathLike]
Reader = Callable[[ModelSource, str], tuple[Checkpoint, Report]]
Writer = Callable[[Checkpoint, PathLike, str], Report]


def _read_uer(fmt: str) -> Reader:
    def read(source: ModelSource, family: str) -> tuple[Checkpoint, Report]:
        if source.given_config is None and source.config_file is None:
            raise ValueError(f"--from {fmt} needs --config_path: the checkpoint file holds no model config and none "
                             f"is beside it (give the UER JSON config it was trained with, or a shipped name such as "
                             "bert/base)")
        cfg = ModelConfig.from_json(source.given_config or source.config_file)
        ckpt, report = convert_uer_state(source.state(), cfg, str(source.path), fmt)
        if source.given_config is None:
            report.notes.append(f"model config: {source.config_file} (beside the checkpoint; --config_path overrides it)")
        return ckpt, report
    return read


def _read_uer_ds(source: ModelSource, family: str) -> tuple[Checkpoint, Report]:
    ckpt = source.checkpoint()
    return ckpt, Report(converted=len(ckpt.state), notes=[f"read {source.description}"])


# name -> (the kinds of path it reads (convert.resolve.KINDS), reader(source, family) -> (checkpoint, report))
READERS: dict[str, tuple[tuple[str, ...], Reader]] = {
    "hf": (("hf",), lambda source, family: read_hf(source.path, family)),
    "uer": (("uer", "weights"), _read_uer("uer")),
    # TencentPretrain saves the same layout as UER-py >= 1.0 for these families (checked at its HEAD)
    "tencentpretrain": (("uer", "weights"), _read_uer("tencentpretrain")),
    "uer_ds": (("model", "run", "tag", "task"), _read_uer_ds),
}
# name -> writer(checkpoint, output, family) -> report
WRITERS: dict[str, Writer] = {
    "hf": write_hf,
    "uer": lambda ckpt, path, family: write_uer(ckpt, path),
    "uer_ds": lambda ckpt, path, family: write_uer_ds(ckpt, path),
}
MODEL_FAMILIES = tuple(FAMILIES)


def check_family(ckpt: Checkpoint, family: str) -> None:
    """`--model` must describe the checkpoint: the HF table of that family must accept its config."""
    try:
        FAMILIES[family].from_config(ckpt.config, {}, ckpt.state)
    except ValueError as err:
        raise ValueError(f"--model {family} does not describe this checkpoint: {err}") from None


def convert(source: str, dest: str, input_path: PathLike, output_path: PathLike, family: str,
            config_path: Optional[PathLike] = None) -> Report:
    """Read `input_path` in format `source`, write `output_path` in format `dest`; the merged report.
    The input is recognised by the one resolver (convert.resolve), which must find it of `source`'s kinds."""
    if family not in FAMILIES:
        raise ValueError(f"model has value '{family}': must be one of {', '.join(FAMILIES)}")
    kinds, read = READERS[source]
    model = resolve_model(input_path, "--input", kinds=MODEL_KINDS, config_path=config_path)
    if model.kind not in kinds:
        raise ValueError(f"--from {source}: --input {input_path} is {model.description}; --from {source} reads "
                         + "; ".join(KINDS[k] for k in kinds) + f" (use --from {_format_of(model.kind)})")
    ckpt, read_report = read(model, family)
    if source != "hf":
        check_family(ckpt, family)
    return read_report.merge(WRITERS[dest](ckpt, output_path, family))


def _format_of(kind: str) -> str:
    return next(name for name, (kinds, _) in READERS.items() if kind in kinds)


CONVERSIONS: dict[tuple[str, str], Callable[..., Report]] = {
    (src, dst): functools.partial(convert, src, dst) for src in READERS for dst in WRITERS if src != dst
}


def convert_hf_to_uer_ds(input_dir: PathLike, output_dir: PathLike, family: str) -> Report:
    return convert("hf", "uer_ds", input_dir, output_dir, family)


__all__ = ["CONVERSIONS", "MODEL_FAMILIES", "READERS", "WRITERS", "Checkpoint", "ModelSource", "Report", "convert",
           "convert_hf_to_uer_ds", "format_hint", "resolve_model"]
