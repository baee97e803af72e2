"""TaskModel: a pre-trained body (embedding + encoder, the keys of `uer_ds.models.Model`) with one
fine-tuning head per task, and task model directories.

A head is an nn.Module with
    forward(hidden, tgt: dict, seg) -> TargetResult      (training and evaluation loss)
    predict(hidden, seg) -> tensor or tuple of tensors     (logits, per example; no labels needed)
    predict(hidden, seg, tgt) instead, when the head sets `predict_takes_tgt = True`: tgt then carries
    inputs that are not labels (word-start masks, option masks), which collate puts in every batch
The heads live in `target` (a ModuleDict, as a Model's pre-training targets do), so their keys are
`target.<head name>.*`, the engine reports per head, and a pre-trained model's own targets
(`target.mlm.*`, `target.sp.*`) are simply other heads' keys: expected extras, not errors.

A task model directory is a model directory (config.json with the body's config, model.safetensors)
plus task.json (task name, heads and their settings, sequence length, tokenizer identity).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

import torch
from torch import nn

from uer_ds.atomic import atomic_paths
from uer_ds.config import ModelConfig
from uer_ds.models.layers.packing import Packing
from uer_ds.models.model import Model
from uer_ds.textfile import load_json

TASK_FILE = "task.json"
HEAD_PREFIX = "target."


def body_config(cfg: ModelConfig) -> ModelConfig:
    """The config without pre-training targets (a fine-tuned model has heads instead).  Tying the
    output matrix to the word embedding means nothing without an LM/MLM head, so it is dropped;
    a dual (siamese) model keeps it (there it shares the two streams)."""
    dual = cfg.encoder == "dual"
    return cfg.replace(target=(), tie_weights=cfg.tie_weights if dual else False)


class TaskModel(Model):
    """embedding -> encoder -> the head of the batch's task.

    forward(src, tgt, seg, predict=False, padded=None): tgt is a dict holding the labels the head needs
    and `task` (an int: which head; 0 when absent); padded as in `Model.encode`.  With predict=True the head's
    predictions are returned instead of a TargetResult (labels are not needed).  This is the
    signature the engine calls: `module(src, tgt, seg)` for training, `predict=True` for inference.
    """

    def __init__(self, cfg: ModelConfig, heads: Mapping[str, nn.Module]) -> None:
        super().__init__(body_config(cfg))
        if not heads:
            raise ValueError("a TaskModel needs at least one head")
        self.target = nn.ModuleDict(dict(heads))
        self.head_names = tuple(heads)

    def head_index(self, tgt: Optional[Mapping[str, Any]]) -> int:
        """The head a batch is for: tgt["task"], a Python int from the collate function (a one-element
        tensor is accepted too: an ONNX graph takes it so; on a device reading it would synchronise)."""
        if tgt is None or "task" not in tgt:
            return 0
        task = tgt["task"]
        return task if isinstance(task, int) else int(task.reshape(-1)[0])

    def forward(self, src, tgt: Optional[Mapping[str, Any]], seg, predict: bool = False,
                padded: Union[None, bool, Packing] = None):
        hidden = self.encode(src, seg, padded, sub=None if tgt is None else tgt.get("sub"))
        name = self.head_names[self.head_index(tgt)]
        head = self.target[name]
        if predict:
            if getattr(head, "predict_takes_tgt", False):
                return head.predict(hidden, seg, tgt)
            return head.predict(hidden, seg)
        result = head(hidden, tgt, seg)
        if len(self.head_names) > 1:  # multi-task: the engine's statistics go to this head's name
            return result._replace(parts={name: result})
        return result


# ---- loading the pre-trained body ----------------------------------------------------------------
def select_pretrained(state: dict[str, torch.Tensor], model: TaskModel, source: str,
                      allow_partial: bool) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The part of `state` to load into `model`, and report lines.

    Body keys (embedding, encoder) must match in name and shape, unless allow_partial.  Head keys
    are optional both ways: the model's heads missing from `state` start fresh (the usual case);
    heads in `state` that the model lacks (the pre-training targets MLM/SP/LM, or other tasks'
    heads) are ignored; a head key whose shape differs (another label count) starts fresh.
    """
    from uer_ds.models.io import aliased_keys

    own = {k: tuple(getattr(v, "ds_shape", v.shape)) for k, v in model.state_dict().items()}
    aliases = aliased_keys(model)
    load, fresh_heads, other_heads, reshaped = {}, set(), set(), []
    body_missing = sorted(k for k in own if k not in state and k not in aliases and not k.startswith(HEAD_PREFIX))
    body_unexpected = sorted(k for k in state if k not in own and not k.startswith(HEAD_PREFIX))
    for key, tensor in state.items():
        if key not in own:
            if key.startswith(HEAD_PREFIX):
                other_heads.add(key.split(".")[1])
            continue
        if own[key] != tuple(tensor.shape):
            if key.startswith(HEAD_PREFIX):
                reshaped.append(f"{key} {tuple(tensor.shape)} -> {own[key]}")
                continue
            raise ValueError(f"{source}: key '{key}' has shape {tuple(tensor.shape)}, the model expects {own[key]}")
        load[key] = tensor
    for key in own:
        if key.startswith(HEAD_PREFIX) and key not in load and key not in aliases:
            fresh_heads.add(key.split(".")[1])
    notes = []
    if body_missing or body_unexpected:
        detail = (f"missing keys {body_missing[:8]}{' ...' if len(body_missing) > 8 else ''}; "
                  f"unexpected keys {body_unexpected[:8]}{' ...' if len(body_unexpected) > 8 else ''}")
        if not allow_partial:
            raise ValueError(f"{source}: the embedding/encoder does not match the model config ({detail}). Check "
                             "--config_path against the pre-trained model, or pass --allow_partial_load.")
        notes.append(f"partial load (--allow_partial_load): {detail}")
    loaded_body = sum(1 for k in load if not k.startswith(HEAD_PREFIX))
    notes.append(f"loaded {loaded_body} embedding/encoder tensors from {source}")
    if other_heads:
        notes.append(f"not loaded, as expected: the pre-trained model's own heads {sorted(other_heads)} "
                     "(pre-training targets or other tasks' heads)")
    if fresh_heads:
        notes.append(f"initialised fresh: head(s) {sorted(fresh_heads)}")
    if reshaped:
        notes.append(f"initialised fresh (shape differs): {', '.join(reshaped)}")
    return load, notes


# ---- task model directories ----------------------------------------------------------------------
def write_task_dir(directory: Union[str, os.PathLike], model: TaskModel, state: Mapping[str, torch.Tensor],
                   task_info: dict) -> Path:
    """config.json + task.json + model.safetensors; each file under a temporary name, then renamed;
    config.json last (a directory with it is complete)."""
    from safetensors.torch import save_file

    from uer_ds.models.io import CONFIG_NAME, WEIGHTS_NAME, aliased_keys
    from uer_ds.outputs import writing

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    aliases = aliased_keys(model)
    tensors = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
               for k, v in state.items() if k not in aliases}
    with writing(directory / WEIGHTS_NAME, what="files", removed=True), \
            atomic_paths(*(directory / n for n in (TASK_FILE, WEIGHTS_NAME, CONFIG_NAME))) as (tmp_task, tmp_weights,
                                                                                          tmp_config):
        tmp_task.write_text(json.dumps(task_info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        save_file(tensors, str(tmp_weights), metadata={"format": "pt", "producer": "uer_ds"})
        model.config.to_json(tmp_config)
    return directory


def read_task_info(directory: Union[str, os.PathLike]) -> dict:
    path = Path(directory) / TASK_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: not a fine-tuned task model (no {TASK_FILE}); give the directory "
                                "`uer-ds finetune` wrote as --output_model_path")
    return load_json(path, TASK_FILE)


def load_task_model(directory: Union[str, os.PathLike], build_heads: Callable[[ModelConfig, dict], dict],
                    device: Union[str, torch.device] = "cpu", config: Optional[ModelConfig] = None
                    ) -> tuple[TaskModel, dict]:
    """Rebuild a TaskModel from a task directory; `build_heads(cfg, task_info)` makes its heads.  `config`:
    the saved config with runtime settings changed (kernels), else the saved one.  Reads this one format;
    what a path is, is the resolver's business (uer_ds.convert.resolve)."""
    from safetensors.torch import load_file

    from uer_ds.models.io import CONFIG_NAME, WEIGHTS_NAME, load_state_dict_checked

    directory = Path(directory)
    info = read_task_info(directory)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory}: incomplete task model: {name} is missing")
    cfg = config or ModelConfig.from_json(directory / CONFIG_NAME)
    with torch.device("meta"):
        model = TaskModel(cfg, build_heads(cfg, info))
    model = model.to_empty(device=device)
    model.init_weights()
    load_state_dict_checked(model, load_file(str(directory / WEIGHTS_NAME), device=str(device)),
                            str(directory / WEIGHTS_NAME), strict=True)
    return model.eval(), info


__all__ = ["TASK_FILE", "TaskModel", "body_config", "load_task_model", "read_task_info", "select_pretrained",
           "write_task_dir"]
