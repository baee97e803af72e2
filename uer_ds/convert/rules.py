"""The machinery every format shares: invertible key-mapping rules, the in-memory checkpoint that all
conversions pass through, reports, and outputs that appear whole or not at all.

A format (Hugging Face, UER-py, ...) is a table of Rules between its keys ("theirs") and uer_ds's keys
("ours").  Reading applies each rule's `to_ours`, writing its `to_theirs`, so one table serves both
directions and a round trip through uer_ds gives back every tensor.  Our keys under `extra.` name tensors
the uer_ds model has no place for (a BertModel's pooler, RoBERTa's reserved position rows); they travel
in the checkpoint's `extra` and are written beside a uer_ds model as `extra.safetensors`, so the way
back can restore them.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import torch

from uer_ds.atomic import atomic_path
from uer_ds.config import ModelConfig

PathLike = Union[str, os.PathLike]
Tensors = list[Optional[torch.Tensor]]
EXTRA = "extra."


def _same(tensors: Tensors) -> Tensors:
    return list(tensors)


@dataclass(frozen=True)
class Rule:
    """`theirs` keys <-> `ours` keys; `to_ours` / `to_theirs` map the tensor lists (copies by default).

    optional: the rule applies only where its source keys exist (a pooler that some heads lack);
    reading skips it when all of `theirs` are absent, writing when all of `ours` are.  A non-optional
    rule's `to_theirs` receives None for an absent `extra.` key and must supply a default; `to_ours`
    may give None for an `extra.` key when there is nothing to keep.
    """

    theirs: tuple[str, ...]
    ours: tuple[str, ...]
    to_ours: Callable[[Tensors], Tensors] = _same
    to_theirs: Callable[[Tensors], Tensors] = _same
    optional: bool = False


def copy(theirs: str, ours: str, params: tuple[str, ...] = ("weight", "bias"), optional: bool = False) -> list[Rule]:
    """One-to-one rules for a module's parameters: `theirs.weight` <-> `ours.weight`, and so on."""
    return [Rule((f"{theirs}.{p}",), (f"{ours}.{p}",), optional=optional) for p in params]


@dataclass
class Checkpoint:
    """A model between formats: our config, our state dict (tied parameters once), and the extras."""

    config: ModelConfig
    state: dict[str, torch.Tensor]
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # keys start with "extra."
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. {"hf_config": {...}} kept for the way back


@dataclass
class Report:
    """What a conversion did: tensors written, input keys not used, extras kept or not carried."""

    converted: int = 0
    unused_input: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # input keys kept in extra.safetensors for the way back
    not_carried: list[str] = field(default_factory=list)  # extras the output format has no place for
    notes: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = list(self.notes) + [f"converted tensors: {self.converted}"]
        if self.unused_input:
            out.append(f"input keys not used ({len(self.unused_input)}): {', '.join(self.unused_input)}")
        if self.kept:
            out.append(f"kept in extra.safetensors for the way back ({len(self.kept)}): {', '.join(self.kept)}")
        if self.not_carried:
            out.append(f"not carried, the output format has no place for them ({len(self.not_carried)}): "
                       f"{', '.join(self.not_carried)}")
        return out

    def merge(self, other: "Report") -> "Report":
        return Report(converted=other.converted, unused_input=self.unused_input + other.unused_input,
                      kept=self.kept + other.kept, not_carried=self.not_carried + other.not_carried,
                      notes=self.notes + other.notes, written=self.written + other.written)


# ---- applying a table ---------------------------------------------------------------------------
def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """{our key: shape} of the model `cfg` builds (on the meta device: no memory), tied keys once."""
    from uer_ds.models import build_model
    from uer_ds.models.io import aliased_keys

    model = build_model(cfg, device="meta")
    aliases = aliased_keys(model)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in aliases}


def to_ours(state: dict[str, torch.Tensor], rules: list[Rule], expected: dict[str, tuple[int, ...]],
            source: str, display: Callable[[str], str] = str
            ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], set[str]]:
    """Apply `rules` to a state dict in their layout: (our state, our extras, their keys used).

    Raises naming every missing key at once, and the first shape mismatch with the key and both shapes;
    `display` turns a key of `state` into the name the file has (HF's prefixes, say).
    """
    ours: dict[str, torch.Tensor] = {}
    extra: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    missing: list[str] = []
    for rule in rules:
        absent = [k for k in rule.theirs if k not in state]
        if absent:
            if not (rule.optional and len(absent) == len(rule.theirs)):
                missing += absent
            continue
        outputs = rule.to_ours([state[k] for k in rule.theirs])
        for key, tensor in zip(rule.ours, outputs):
            if tensor is None:  # an extra with nothing to keep
                continue
            if key.startswith(EXTRA):
                extra[key] = tensor
                continue
            want = expected.get(key)
            if want is not None and tuple(tensor.shape) != want:
                shapes = ", ".join(f"'{display(k)}' {tuple(state[k].shape)}" for k in rule.theirs)
                raise ValueError(f"{source}: shape mismatch: {shapes} gives '{key}' of shape {tuple(tensor.shape)}, "
                                 f"but the model config needs {want}")
            ours[key] = tensor
        used.update(rule.theirs)
    if missing:
        raise ValueError(f"{source}: {len(missing)} key(s) the model config needs are missing: "
                         f"{', '.join(map(display, missing))} "
                         "(check --model and --config_path against the checkpoint)")
    uncovered = sorted(k for k in expected if k not in ours)
    if uncovered:
        raise ValueError(f"{source}: no rule of this format fills {', '.join(uncovered)}; the model config has parts "
                         "this format cannot hold")
    return ours, extra, used


def to_theirs(ckpt: Checkpoint, rules: list[Rule]) -> tuple[dict[str, torch.Tensor], set[str]]:
    """Apply `rules` backwards: (their state dict, the extras used)."""
    tensors = {**ckpt.state, **ckpt.extra}
    theirs: dict[str, torch.Tensor] = {}
    used_extra: set[str] = set()
    for rule in rules:
        values = [tensors.get(k) for k in rule.ours]
        if rule.optional and all(v is None for v in values):
            continue
        lacking = [k for k, v in zip(rule.ours, values) if v is None and not k.startswith(EXTRA)]
        if lacking:
            raise ValueError(f"the uer_ds model lacks {', '.join(lacking)}, which this format needs")
        used_extra.update(k for k, v in zip(rule.ours, values) if v is not None and k.startswith(EXTRA))
        for key, tensor in zip(rule.theirs, rule.to_theirs(values)):
            theirs[key] = tensor.contiguous()
    covered = {k for rule in rules for k in rule.ours}
    unmapped = sorted(k for k in ckpt.state if k not in covered)
    if unmapped:
        raise ValueError(f"this format has no place for {', '.join(unmapped)}")
    return theirs, used_extra


# ---- outputs that appear whole or not at all ------------------------------------------------------
def _check_new_output(output: Path) -> None:
    if output.is_dir() and any(output.iterdir()):
        raise FileExistsError(f"--output {output}: the directory exists and is not empty; give a new path")
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"--output {output}: a file of that name exists; give a new path")


@contextlib.contextmanager
def new_directory(output: PathLike) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it is renamed to `output`, on failure removed."""
    output = Path(output)
    _check_new_output(output)  # an existing `output` is an empty directory: replaced
    with atomic_path(output) as tmp:
        tmp.mkdir()
        yield tmp


@contextlib.contextmanager
def new_file(output: PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it is renamed to `output`, on failure removed."""
    output = Path(output)
    if output.is_dir():
        raise FileExistsError(f"--output {output}: is a directory; give a file path")
    if output.exists() and not overwrite:
        raise FileExistsError(f"--output {output}: the file exists; give a new path")
    with atomic_path(output) as tmp:
        yield tmp


def common_dtype(state: dict[str, torch.Tensor]) -> torch.dtype:
    """The floating dtype of a state dict's tensors (fp32 when they disagree or there are none)."""
    dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else torch.float32
