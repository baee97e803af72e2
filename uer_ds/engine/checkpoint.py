"""Checkpoint directories, their layout, and export to one fp32 state dict (what a path a user gives is,
and reading pretrained weights from it, is uer_ds.convert.resolve's business).

    OUT/latest                     "global_step<N>", written last and atomically (uer_ds.atomic)
    OUT/global_step<N>/            DeepSpeed's files (model/optimizer states, ZeRO shards, pipeline layers)
                      config.json  the resolved model config (UER key names)
                      uer_ds.json  step, data position, tokenizer identity, training settings, ds_config

An interrupted save leaves `latest` on the previous complete tag, so a resume never sees a half-written
checkpoint.  DeepSpeed's own `zero_to_fp32` works on these directories (it reads `latest` too).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Optional, Union

import torch

from uer_ds.atomic import atomic_path
from uer_ds.config import ModelConfig

LATEST = "latest"
METADATA = "uer_ds.json"
CONFIG = "config.json"
PathLike = Union[str, os.PathLike]


def tag_for(step: int) -> str:
    return f"global_step{step}"


def write_metadata(tag_dir: Path, model_config: Optional[ModelConfig], state: dict) -> None:
    if model_config is not None:
        with atomic_path(tag_dir / CONFIG) as tmp:
            model_config.to_json(tmp)
    with atomic_path(tag_dir / METADATA) as tmp:
        tmp.write_text(json.dumps(state, indent=2, default=str) + "\n", encoding="utf-8")


def write_latest(directory: PathLike, tag: str) -> None:
    """Point `latest` at `tag`: a temporary file, fsync'd, renamed over (atomic on POSIX)."""
    with atomic_path(Path(directory) / LATEST, fsync=True) as tmp:
        tmp.write_text(tag, encoding="utf-8")


def remove_incomplete(directory: Path, tag: str) -> bool:
    """Remove directory/tag unless `latest` names it (an interrupted save's leftovers; `latest` is
    written last, so it never names one).  Returns whether something was removed."""
    import shutil

    path = directory / tag
    latest = directory / LATEST
    if not path.is_dir() or (latest.is_file() and latest.read_text(encoding="utf-8").strip() == tag):
        return False
    shutil.rmtree(path)
    return True


def read_latest(directory: PathLike) -> str:
    path = Path(directory) / LATEST
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: not a uer_ds checkpoint directory (no '{LATEST}' file)")
    tag = path.read_text(encoding="utf-8").strip()
    if not (Path(directory) / tag).is_dir():
        raise FileNotFoundError(f"{path} points to '{tag}', which is not a directory there")
    return tag


def is_checkpoint_dir(path: PathLike) -> bool:
    """A checkpoint directory (with `latest`); readers that also take one of its tags use checkpoint_location."""
    return (Path(path) / LATEST).is_file()


def checkpoint_location(path: PathLike) -> Optional[tuple[Path, Optional[str]]]:
    """(checkpoint directory, tag) for OUT (tag None: what `latest` names) or OUT/global_step<N>
    (that tag), else None.  Lets every reader take the tag directory a user sees on disk."""
    path = Path(path)
    if (path / LATEST).is_file():
        return path, None
    if (path / METADATA).is_file() and (path / CONFIG).is_file():
        return path.parent, path.name
    return None


def read_metadata(directory: PathLike, tag: Optional[str] = None) -> tuple[ModelConfig, dict, Path]:
    directory = Path(directory)
    tag_dir = directory / (tag or read_latest(directory))
    meta_path = tag_dir / METADATA
    if not meta_path.is_file():
        raise FileNotFoundError(f"{tag_dir}: no {METADATA}; this checkpoint was not written by uer_ds")
    return ModelConfig.from_json(tag_dir / CONFIG), json.loads(meta_path.read_text(encoding="utf-8")), tag_dir


def rng_state() -> dict:
    """This process's random generators, as plain containers and tensors (loadable with weights_only)."""
    import random

    import numpy as np

    np_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save_rng_state(tag_dir: Path, rank: int) -> None:
    tag_dir.mkdir(parents=True, exist_ok=True)
    torch.save(rng_state(), tag_dir / f"rng_state_{rank}.pt")


def load_rng_state(tag_dir: Path, rank: int) -> bool:
    """Restore what save_rng_state wrote for this rank (dropout then continues as if uninterrupted)."""
    import random

    import numpy as np

    path = tag_dir / f"rng_state_{rank}.pt"
    if not path.is_file():
        return False
    state = torch.load(path, weights_only=True)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    return True


# ---- resume -------------------------------------------------------------------------------------
UNIVERSAL_SUFFIX = "_universal"  # DeepSpeed's ds_to_universal names its output folder <tag>_universal


def check_unchanged(where: str, pairs: dict[str, tuple[Any, Any]], how: str) -> None:
    """pairs: {what: (saved value, given value)}.  Any pair that differs is a ValueError naming the
    checkpoint, each changed item with its saved and given values, and `how` to go on."""
    changed = [f"{what}: saved {saved!r}, given {given!r}" for what, (saved, given) in pairs.items() if saved != given]
    if changed:
        raise ValueError(f"--resume: {where} differs from this run in " + "; ".join(changed) + f". {how}")


def config_changes(saved: ModelConfig, given: ModelConfig) -> dict[str, tuple[Any, Any]]:
    """{field: (saved, given)} for every model-config field that differs (check_unchanged's pairs)."""
    now = given.to_dict()
    return {f"model config {key}": (value, now.get(key)) for key, value in saved.to_dict().items()
            if now.get(key) != value}


def partitioned_by_rank(tag_dir: Path) -> bool:
    """Whether the checkpoint's optimizer state is split per data-parallel rank (ZeRO 1-3, or bf16's
    optimizer at ZeRO-0), so that another number of ranks cannot load it as it is."""
    return any(tag_dir.glob("*zero_pp_rank_*_optim_states.pt"))


def resharding(tag_dir: Path, saved: dict, world_size: int, pipeline_stages: int) -> bool:
    """Whether resuming this checkpoint on world_size processes needs DeepSpeed's universal checkpoint;
    a ValueError, at once, where it cannot be resumed at all (the pipeline's layout changed)."""
    saved_world, saved_stages = int(saved.get("world_size", 1)), int(saved.get("pipeline_stages", 1))
    if saved_stages != pipeline_stages or (saved_stages > 1 and saved_world != world_size):
        raise ValueError(f"--resume: {tag_dir} was saved by {saved_world} process(es) in {saved_stages} pipeline "
                         f"stage(s); this run has {world_size} in {pipeline_stages}. A pipeline checkpoint resumes "
                         f"on the same layout only: run with {saved_world} processes and --pipeline_stages "
                         f"{saved_stages}, or start a new run from its weights (--pretrained_model_path {tag_dir})")
    return saved_world != world_size and partitioned_by_rank(tag_dir)


def universal_tag(directory: PathLike, tag: str) -> Optional[str]:
    """`<tag>_universal` when a complete universal copy of the tag is there (written whole, renamed)."""
    name = tag + UNIVERSAL_SUFFIX
    return name if (Path(directory) / name / "zero").is_dir() else None


def convert_to_universal(directory: PathLike, tag: str) -> str:
    """Write DeepSpeed's universal checkpoint of OUT/tag to OUT/<tag>_universal (ds_to_universal, as
    Megatron-DeepSpeed does; in one process, on the CPU) and return its tag.  Written under a temporary
    name and renamed, so a universal folder is always complete; an existing one is reused."""
    import argparse

    from deepspeed.checkpoint import ds_to_universal

    directory = Path(directory)
    done = universal_tag(directory, tag)
    if done is not None:
        return done
    name = tag + UNIVERSAL_SUFFIX
    try:
        with atomic_path(directory / name) as tmp:
            args = argparse.Namespace(input_folder=str(directory / tag), output_folder=str(tmp), num_extract_workers=1,
                                      num_merge_workers=1, keep_temp_folder=False, strict=True,
                                      # uer_ds models carry no Megatron tensor-parallel layout: the default info
                                      inject_missing_state=True)
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                ds_to_universal.main(args)
    finally:
        (directory / "latest_universal").unlink(missing_ok=True)  # it names the temporary folder
    return name


def load_universal(engine, directory: PathLike, tag: str) -> dict:
    """engine.load(directory, tag) of a universal checkpoint, mending what DeepSpeed 0.19.8's ZeRO-3
    loader (stage3.load_hp_checkpoint_state_from_checkpoint_dir_stage3) gets wrong when the optimizer
    has several parameter groups, as uer_ds's has (weight decay on matrices only):
    - it gives every group the first group's settings, so biases and norms would decay from then on;
      each group keeps the weight decay the engine was built with (the learning rate comes back with
      the scheduler's state);
    - it puts one `step` tensor into every group's state, which Adam then advances once per group per
      step, so the bias correction of all but the first group runs ahead; each group gets its own.
    Seen before the mend: a ZeRO-3 run resumed on 2 processes was off by 3.6e-5 in the loss two steps
    later (ZeRO-1/2: 1e-7, as an uninterrupted run)."""
    optimizer = getattr(engine.ds, "optimizer", None)
    decay = [group.get("weight_decay") for group in getattr(optimizer, "param_groups", [])]
    state = engine.load(str(directory), tag)
    for group, value in zip(getattr(optimizer, "param_groups", []), decay):
        if value is not None:
            group["weight_decay"] = value
    inner = getattr(optimizer, "optimizer", optimizer)
    for param_state in getattr(inner, "state", {}).values():
        if torch.is_tensor(param_state.get("step")):
            param_state["step"] = param_state["step"].clone()
    return state


# ---- export -------------------------------------------------------------------------------------
def _pipeline_state(tag_dir: Path, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    from uer_ds.engine.pipeline import _to_model_key

    state: dict[str, torch.Tensor] = {}
    files = sorted(tag_dir.glob("layer_*-model_states.pt"))
    if not files:
        raise FileNotFoundError(f"{tag_dir}: no pipeline layer files (layer_*-model_states.pt)")
    for path in files:
        index = int(re.match(r"layer_(\d+)-", path.name).group(1))
        for key, value in torch.load(path, map_location="cpu", weights_only=True).items():
            model_key = _to_model_key(f"{index}.{key}", cfg)
            if model_key is not None:
                state.setdefault(model_key, value.float() if value.is_floating_point() else value)
    return state


def export_state(directory: PathLike, tag: Optional[str] = None) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Gather a uer_ds checkpoint into one fp32 Model state dict (ZeRO shards merged, pipeline layers
    renamed).  Runs in one process, no GPU and no process group needed."""
    cfg, meta, tag_dir = read_metadata(directory, tag)
    ds_config = meta.get("ds_config", {})
    if meta.get("pipeline_stages", 1) > 1:
        return cfg, _pipeline_state(tag_dir, cfg)
    if int(ds_config.get("zero_optimization", {}).get("stage", 0)) == 0:
        states = torch.load(tag_dir / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=True)
        return cfg, {k: v.float() if v.is_floating_point() else v for k, v in states["module"].items()}
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    # it prints its progress on every call (a dozen lines and a bar); errors still raise
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        state = get_fp32_state_dict_from_zero_checkpoint(str(directory), tag=tag_dir.name)
    return cfg, dict(state)


def check_pretrained(state: dict[str, torch.Tensor], model: torch.nn.Module, source: str,
                     allow_partial: bool) -> list[str]:
    """Compare keys and shapes with the model; strict unless allow_partial.  Returns report lines."""
    from uer_ds.models.io import aliased_keys

    own = {k: tuple(getattr(v, "ds_shape", v.shape)) for k, v in model.state_dict().items()}
    aliases = aliased_keys(model)
    for key, tensor in state.items():
        if key in own and own[key] != tuple(tensor.shape):
            raise ValueError(f"{source}: key '{key}' has shape {tuple(tensor.shape)}, the model expects {own[key]}")
    missing = sorted(k for k in own if k not in state and k not in aliases)
    unexpected = sorted(k for k in state if k not in own)
    lines = []
    if missing:
        lines.append(f"missing keys (left at their initial values): {', '.join(missing)}")
    if unexpected:
        lines.append(f"unexpected keys (ignored): {', '.join(unexpected)}")
    if lines and not allow_partial:
        raise ValueError(f"{source} does not match the model: " + "; ".join(lines) +
                         ". Pass --allow_partial_load to load what matches")
    return lines
