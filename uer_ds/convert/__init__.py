"""Checkpoint conversion between uer_ds and other formats.

Every conversion reads its input into one in-memory Checkpoint (our config, our state dict, extras)
and writes that out, so READERS x WRITERS give the conversion matrix; CONVERSIONS maps (from, to) to
a function(input, output, family, config_path=None) -> Report, and `uer-ds convert` derives its
choices from it.  A new source is one more READERS entry (a ZeRO checkpoint directory is one more
entry of native.UER_DS_LAYOUTS, behind `--from uer_ds`).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable, Optional, Union

from uer_ds.convert.hf import FAMILIES, read_hf, write_hf
from uer_ds.convert.native import read_uer_ds, write_uer_ds
from uer_ds.convert.rules import Checkpoint, Report
from uer_ds.convert.uer import read_uer, write_uer

PathLike = Union[str, os.PathLike]
Reader = Callable[[PathLike, str, Optional[PathLike]], tuple[Checkpoint, Report]]
Writer = Callable[[Checkpoint, PathLike, str], Report]

# name -> reader(input, family, config_path) -> (checkpoint, report)
READERS: dict[str, Reader] = {
    "hf": lambda path, family, config_path: read_hf(path, family),
    "uer": lambda path, family, config_path: read_uer(path, config_path, "uer"),
    # TencentPretrain saves the same layout as UER-py >= 1.0 for these families (checked at its HEAD)
    "tencentpretrain": lambda path, family, config_path: read_uer(path, config_path, "tencentpretrain"),
    "uer_ds": lambda path, family, config_path: read_uer_ds(path),
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
    """Read `input_path` in format `source`, write `output_path` in format `dest`; the merged report."""
    if family not in FAMILIES:
        raise ValueError(f"model has value '{family}': must be one of {', '.join(FAMILIES)}")
    ckpt, read_report = READERS[source](input_path, family, config_path)
    if source != "hf":
        check_family(ckpt, family)
    return read_report.merge(WRITERS[dest](ckpt, output_path, family))


CONVERSIONS: dict[tuple[str, str], Callable[..., Report]] = {
    (src, dst): functools.partial(convert, src, dst) for src in READERS for dst in WRITERS if src != dst
}


def convert_hf_to_uer_ds(input_dir: PathLike, output_dir: PathLike, family: str) -> Report:
    return convert("hf", "uer_ds", input_dir, output_dir, family)


def load_any_model(path: PathLike, config_path: Optional[PathLike] = None, uer_layer_norm: bool = True):
    """A Model from a uer_ds model directory, a training checkpoint directory or one of its
    global_step<N> tags, a Hugging Face directory (config.json with model_type) or a UER-py/TencentPretrain
    .bin (with `config_path`); what the tools' --load_model_path takes.  A UER-py file computes with
    UER-py's LayerNorm (uer.use_uer_layer_norm) unless uer_layer_norm is False, so the tools give UER-py's
    outputs for UER-py's models."""
    from uer_ds.convert.native import is_checkpoint_dir
    from uer_ds.convert.uer import use_uer_layer_norm
    from uer_ds.models import build_model, load_model
    from uer_ds.models.io import load_state_dict_checked
    from uer_ds.textfile import load_json

    path = Path(path)
    from_uer = False
    if path.is_dir() and is_checkpoint_dir(path):  # a training checkpoint (or one of its tags): gather it
        ckpt, _ = read_uer_ds(path)
    elif path.is_dir():
        hf_type = None
        if (path / "config.json").is_file():
            hf_type = load_json(path / "config.json", "load_model_path").get("model_type")
        if hf_type is None:
            return load_model(path)
        if hf_type not in FAMILIES:
            raise ValueError(f"{path}: Hugging Face model_type '{hf_type}' is not one of {', '.join(FAMILIES)}")
        ckpt, _ = read_hf(path, hf_type)
    elif path.is_file():
        ckpt, _ = read_uer(path, config_path)
        from_uer = True
    else:
        raise FileNotFoundError(f"load_model_path '{path}': no such file or directory")
    model = build_model(ckpt.config, device="meta").to_empty(device="cpu")
    model.init_weights()
    load_state_dict_checked(model, {k: v.float() for k, v in ckpt.state.items()}, str(path), strict=True)
    if from_uer and uer_layer_norm:
        use_uer_layer_norm(model)
    return model.eval()


# key prefixes of Hugging Face checkpoints (pytorch_model.bin / model.safetensors of BERT, RoBERTa, ALBERT, GPT-2)
HF_PREFIXES = ("bert.", "roberta.", "albert.", "transformer.h.", "transformer.wte.", "cls.predictions.",
               "embeddings.word_embeddings.", "encoder.layer.", "h.0.", "wte.")


def format_hint(state: dict, path: PathLike) -> str:
    """A sentence for a mismatch error: what to run when `state` is another format's checkpoint."""
    if any(k.startswith(HF_PREFIXES) for k in state):
        return (f" {path} looks like a Hugging Face checkpoint: convert it first with `uer-ds convert --from hf "
                "--to uer_ds --model bert|roberta|albert|gpt2 --input DIR --output OUT`")
    return (" (a checkpoint of another format converts with `uer-ds convert --from hf|uer|tencentpretrain --to "
            "uer_ds`; UER-py/TencentPretrain files load directly)")


def read_pretrained_state(path: PathLike, cfg) -> tuple[dict, list[str]]:
    """--pretrained_model_path's weights by uer_ds key, and report lines: what engine.checkpoint's
    read_pretrained reads (model and checkpoint directories, .safetensors/.bin), with a UER-py or
    TencentPretrain state dict (any layout UER-py has used) converted in memory for model config `cfg`
    (its pre-training targets that the file has; fine-tuning heads and other keys are reported)."""
    from uer_ds.convert.uer import TARGETS, convert_uer_state, looks_like_uer
    from uer_ds.engine.checkpoint import read_pretrained

    state = read_pretrained(path)
    if not looks_like_uer(state):
        return state, []
    targets = tuple(t for t in cfg.target if t in TARGETS)
    tie = cfg.tie_weights and any(t in ("mlm", "lm") for t in targets)
    ckpt, report = convert_uer_state(state, cfg.replace(target=targets, tie_weights=tie), str(path))
    notes = [f"{report.notes[0]}: converted {report.converted} tensors to uer_ds's names in memory"
             " (`uer-ds convert --from uer --to uer_ds` writes them once)"]
    notes += report.notes[1:]
    if report.unused_input:
        shown = ", ".join(report.unused_input[:8]) + (" ..." if len(report.unused_input) > 8 else "")
        notes.append(f"keys of {path} not used ({len(report.unused_input)}): {shown}")
    return ckpt.state, notes


__all__ = ["CONVERSIONS", "MODEL_FAMILIES", "READERS", "WRITERS", "Checkpoint", "Report", "convert",
           "convert_hf_to_uer_ds", "format_hint",
           "load_any_model", "read_pretrained_state"]
