"""The one resolver: a path a user gives for a model -> what it is -> the model, whatever the command.

Every command that takes a model calls `resolve_model(path, flag, kinds)`: `pretrain` and `finetune`
(--pretrained_model_path), `infer` (--load_model_path), every model tool, `export`, `export onnx`,
`convert` (--input) and `check-model`.  It recognises, by the files there (KINDS, tried in this order):

  task     a fine-tuned task directory (task.json + config.json + model.safetensors): `infer` loads the
           task model; the tools, `pretrain` and `finetune` read its embedding and encoder
  hf       a Hugging Face model directory (config.json with model_type bert, roberta, albert, gpt2 or ernie)
  model    a uer_ds model directory (config.json + model.safetensors)
  run      a uer_ds training run ('latest' + global_step<N>/): the step 'latest' names
  tag      one global_step<N>/ of a run (uer_ds.json + config.json): that step
  onnx     an `.onnx` file written by `uer-ds export onnx`: `infer` predicts through onnxruntime
  uer      a UER-py/TencentPretrain state dict (.bin; its key names), with its model config from
           --config_path, else `<name>_config.json` or `config.json` beside it (what `convert --to uer`
           writes), else UER-py's default bert/base
  weights  a .safetensors/.bin state dict with uer_ds's key names (its config found as for `uer`)

and nothing else decides what a path is.  A missing path is "no such file or directory", naming the
flag.  Reading is lazy and done once: `state()`/`checkpoint()` read the tensors (a run is gathered from
its ZeRO shards or pipeline layers in this process), `model()` builds an eval-mode Model with the
`kernels` asked for, `task_model()` a TaskModel, `onnx_forward()` an onnxruntime predictor.  The
format readers underneath (models.io, convert.hf, convert.uer, engine.checkpoint.export_state,
tasks.model.load_task_model) read one format each and never guess.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

import torch

from uer_ds.config import UER_DEFAULT_CONFIG, ModelConfig
from uer_ds.convert.rules import Checkpoint

PathLike = Union[str, os.PathLike]

KINDS: dict[str, str] = {
    "task": "a fine-tuned task directory (task.json + config.json + model.safetensors, from `uer-ds finetune`)",
    "hf": "a Hugging Face model directory (config.json with model_type bert, roberta, albert, gpt2 or ernie)",
    "model": "a uer_ds model directory (config.json + model.safetensors)",
    "run": "a uer_ds training run ('latest' + global_step<N>/, from `uer-ds pretrain`)",
    "tag": "a global_step<N>/ directory of a training run (uer_ds.json + config.json)",
    "onnx": "an ONNX model written by `uer-ds export onnx` (.onnx)",
    "uer": "a UER-py/TencentPretrain .bin (its model config: --config_path, else <name>_config.json or "
           "config.json beside it)",
    "weights": "a .safetensors/.bin state dict with uer_ds's key names",
}
MODEL_KINDS = ("task", "hf", "model", "run", "tag", "uer", "weights")  # every kind that holds an encoder
INFER_KINDS = ("task", "uer", "onnx")  # what `infer` predicts with (a UER-py .bin: one fine-tuned by UER-py)
ONNX_TASK_KEY = "uer_ds.task"  # the ONNX metadata entry holding the task.json of the exported head
ONNX_HOST_KEY = "uer_ds.head_host_state"  # JSON: what the host needs beside the graph (a CRF's parameters)
HF_PREFIXES = ("bert.", "roberta.", "albert.", "transformer.h.", "transformer.wte.", "cls.predictions.",
               "embeddings.word_embeddings.", "encoder.layer.", "h.0.", "wte.")  # keys of HF checkpoints


def resolve_model(path: PathLike, flag: str = "--load_model_path", kinds: Iterable[str] = MODEL_KINDS,
                  config_path: Optional[PathLike] = None) -> "ModelSource":
    """What `path` holds, as a ModelSource (nothing is read but what tells the kind apart).

    `kinds`: what the command takes; another kind is a ValueError naming the flag, the path, what it is
    and what the command takes.  `config_path`: the UER JSON config the user gave for a state-dict file
    (--config_path); without it the one beside the file is used.  Raises FileNotFoundError for a missing
    path and ValueError for a directory or file of none of the KINDS.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{flag} '{path}': no such file or directory")
    source = ModelSource(path, _identify(path, flag), flag, config_path)
    kinds = tuple(kinds)
    if source.kind not in kinds:
        raise ValueError(f"{flag} '{path}' is {KINDS[source.kind]}; this command takes "
                         + "; ".join(KINDS[k] for k in kinds))
    return source


def _identify(path: Path, flag: str) -> str:
    """The kind of `path` by its files (a file's uer/weights is settled when it is read)."""
    from uer_ds.models.io import CONFIG_NAME, WEIGHTS_NAME
    from uer_ds.tasks.model import TASK_FILE

    if path.is_file():
        return "onnx" if path.suffix == ".onnx" else "file"
    if (path / TASK_FILE).is_file():
        return "task"
    config = path / CONFIG_NAME
    if config.is_file():
        if "model_type" in _json_object(config, flag):
            return "hf"
        if (path / WEIGHTS_NAME).is_file():
            return "model"
    from uer_ds.engine.checkpoint import checkpoint_location  # imports deepspeed: only when it may be a run

    location = checkpoint_location(path)
    if location is not None:
        return "run" if location[1] is None else "tag"
    raise ValueError(f"{flag} '{path}': a directory that is no model: expected "
                     + "; ".join(KINDS[k] for k in ("task", "hf", "model", "run", "tag")))


def _json_object(path: Path, flag: str) -> dict:
    from uer_ds.textfile import load_json

    values = load_json(path, flag)
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a model config must be a JSON object, got {type(values).__name__}")
    return values


def config_beside(path: Path) -> Optional[Path]:
    """The UER JSON config beside a state-dict file: `<stem>_config.json` (what `uer-ds convert --to uer`
    writes), else `config.json`; Hugging Face configs (with model_type) are not UER configs and skipped."""
    for candidate in (path.with_name(f"{path.stem}_config.json"), path.with_name("config.json")):
        if candidate.is_file():
            try:
                values = json.loads(candidate.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(values, dict) and "model_type" not in values:
                return candidate
    return None


def format_hint(state: dict, path: PathLike) -> str:
    """A sentence for a mismatch error when `state` is another format's checkpoint, else ''."""
    if any(k.startswith(HF_PREFIXES) for k in state):
        return (f" {path} holds Hugging Face key names: give its directory (config.json beside the weights), "
                "which loads directly, or convert it with `uer-ds convert --from hf --to uer_ds`")
    return ""


class ModelSource:
    """A recognised model path (made by resolve_model).  Everything is read on first use, once."""

    def __init__(self, path: Path, kind: str, flag: str, config_path: Optional[PathLike]) -> None:
        self.path, self.kind, self.flag = path, kind, flag
        self.given_config = config_path
        self._state: Optional[dict[str, torch.Tensor]] = None
        self._ckpt: Optional[Checkpoint] = None
        self.notes: list[str] = []  # what reading found (conversions in memory, keys not used), for the user
        if kind == "file":
            self.kind = "uer" if _looks_like_uer(self.state()) else "weights"

    def __repr__(self) -> str:
        return f"ModelSource({str(self.path)!r}, kind={self.kind!r})"

    @property
    def description(self) -> str:
        return KINDS[self.kind]

    @property
    def hf_type(self) -> Optional[str]:
        """A Hugging Face directory's model_type (bert, roberta, albert, gpt2, ernie, or one uer_ds cannot read)."""
        return _json_object(self.path / "config.json", self.flag)["model_type"] if self.kind == "hf" else None

    # ---- the model's config ---------------------------------------------------------------------
    @property
    def config_file(self) -> Optional[Path]:
        """The model's own UER JSON config file: the directory's config.json (a tag's for a run), or the
        one beside a state-dict file; None for Hugging Face directories (their config.json is not a UER
        config: `own_config` converts it) and ONNX files."""
        from uer_ds.models.io import CONFIG_NAME

        if self.kind in ("task", "model", "tag"):
            return self.path / CONFIG_NAME
        if self.kind == "run":
            from uer_ds.engine.checkpoint import read_latest

            return self.path / read_latest(self.path) / CONFIG_NAME
        if self.kind in ("uer", "weights"):
            return config_beside(self.path)
        return None

    def own_config(self) -> Optional[ModelConfig]:
        """The model's config as it was saved (a Hugging Face config converted; a file's from the config
        beside it, vocab_size from its embedding), or None where the path holds none."""
        if self.kind == "hf":
            return self.checkpoint().config
        if self.kind in ("uer", "weights", "onnx"):
            beside = self.config_file
            if beside is None:
                return None
            return _with_vocab(ModelConfig.from_json(beside), self.state())
        return ModelConfig.from_json(self.config_file)

    def default_config(self, given: Optional[PathLike]) -> tuple[Union[str, ModelConfig], Optional[str]]:
        """The config a command merges its model-shape flags over when --config_path is `given` or not:
        (the path or, for a Hugging Face directory, the ModelConfig; a note line when it is the model's
        own).  Without one, UER-py's default bert/base."""
        if given is not None:
            return str(given), None
        if self.config_file is not None:
            return str(self.config_file), f"config: {self.config_file} (the model's own; --config_path overrides it)"
        if self.kind == "hf":
            return self.own_config(), f"config: {self.path} (Hugging Face config.json, converted; --config_path " \
                                      "overrides it)"
        return UER_DEFAULT_CONFIG, None

    # ---- tensors ----------------------------------------------------------------------------------
    def state(self) -> dict[str, torch.Tensor]:
        """The tensors as stored (keys as the files name them), read once: a run's gathered in fp32, a
        Hugging Face directory's with its own names."""
        if self._state is None:
            from uer_ds.convert.weights import read_weight_file, read_weights

            if self.kind in ("file", "uer", "weights"):
                self._state = read_weight_file(self.path)
            elif self.kind in ("task", "model"):
                from uer_ds.models.io import WEIGHTS_NAME

                self._state = read_weight_file(self.path / WEIGHTS_NAME)
            elif self.kind == "hf":
                self._state = read_weights(self.path)
            elif self.kind in ("run", "tag"):
                from uer_ds.engine.checkpoint import checkpoint_location, export_state

                self._state = export_state(*checkpoint_location(self.path))[1]
            else:
                raise ValueError(f"{self.flag} '{self.path}' is {self.description}: it holds no state dict")
        return self._state

    def task_info(self) -> dict:
        """task.json of a task directory (the task, its heads and their settings, the tokenizer)."""
        from uer_ds.tasks.model import read_task_info

        if self.kind == "onnx":
            return self._onnx_info()
        if self.kind != "task":
            raise ValueError(f"{self.flag} '{self.path}' is {self.description}, not a fine-tuned task model")
        return read_task_info(self.path)

    def checkpoint(self, cfg: Optional[ModelConfig] = None, heads: bool = False) -> Checkpoint:
        """The model under uer_ds's names: config + state of the embedding, encoder and pre-training targets
        (a task directory's heads too, with heads=True).  `cfg`: the config a state-dict file is read with
        (default: its own, from the config beside it); a UER-py file is converted in memory."""
        if self.kind == "hf":
            if self._ckpt is None:
                from uer_ds.convert.hf import read_hf

                ckpt, report = read_hf(self.path, self.hf_type)
                self.notes += report.lines()
                self._ckpt = ckpt
            return self._ckpt
        if self.kind == "uer":
            return self._uer_checkpoint(cfg)
        state = self.state()
        if self.kind == "weights":
            cfg = cfg or self.own_config()
            if cfg is None:
                raise ValueError(f"{self.flag} '{self.path}': a state dict without a model config: give --config_path "
                                 f"(or put <name>_config.json beside it)")
            return Checkpoint(_with_vocab(cfg, state), state)
        own = self.own_config()
        if self.kind in ("run", "tag"):  # gathered shards: checked key by key, tied parameters once
            from uer_ds.models.io import model_from_state, unique_state_dict

            return Checkpoint(own, unique_state_dict(model_from_state(own, state, str(self.path))))
        if self.kind == "task" and not heads:
            from uer_ds.tasks.model import HEAD_PREFIX

            return Checkpoint(own, {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIX)})
        from uer_ds.convert.native import read_extra

        extra, meta = read_extra(self.path) if self.kind == "model" else ({}, {})
        return Checkpoint(own, state, extra, meta)

    def _uer_checkpoint(self, cfg: Optional[ModelConfig]) -> Checkpoint:
        from uer_ds.convert.uer import TARGETS, convert_uer_state

        if cfg is None:
            given = self.given_config or self.config_file
            if given is None:
                raise ValueError(f"{self.flag} '{self.path}': a UER-py/TencentPretrain checkpoint holds no model "
                                 "config: give --config_path (the UER JSON config it was trained with, or a shipped "
                                 f"name such as {UER_DEFAULT_CONFIG}), or put <name>_config.json beside it")
            cfg = ModelConfig.from_json(given)
        targets = tuple(t for t in cfg.target if t in TARGETS)  # a fine-tuning head is not a UER-py target
        tie = cfg.tie_weights and any(t in ("mlm", "lm") for t in targets)
        ckpt, report = convert_uer_state(self.state(), cfg.replace(target=targets, tie_weights=tie), str(self.path))
        self.notes = [f"{report.notes[0]}: converted {report.converted} tensors to uer_ds's names in memory "
                      "(`uer-ds convert --from uer --to uer_ds` writes them once)", *report.notes[1:]]
        if report.unused_input:
            shown = ", ".join(report.unused_input[:8]) + (" ..." if len(report.unused_input) > 8 else "")
            self.notes.append(f"keys of {self.path} not used ({len(report.unused_input)}): {shown}")
        return ckpt

    def pretrained_state(self, cfg: ModelConfig) -> tuple[dict[str, torch.Tensor], list[str]]:
        """--pretrained_model_path's weights under uer_ds's names for a model of config `cfg` (UER-py's
        converted in memory for cfg's pre-training targets that it has; a task directory's heads kept, as
        other heads), and report lines."""
        if self.kind == "uer":
            ckpt = self._uer_checkpoint(cfg)
            return ckpt.state, list(self.notes)
        ckpt = self.checkpoint(cfg if self.kind == "weights" else None, heads=True)
        return ckpt.state, list(self.notes)

    # ---- models -----------------------------------------------------------------------------------
    def model(self, cfg: Optional[ModelConfig] = None, kernels: Optional[str] = None,
              uer_layer_norm: bool = True, device: Union[str, torch.device] = "cpu"):
        """An eval-mode Model (embedding, encoder, pre-training targets) with every weight loaded strictly.
        `cfg`: the config of a state-dict file (default: its own); `kernels`: the LayerNorm/attention
        implementation to build with (--kernels; default the saved config's).  A UER-py file computes
        LayerNorm as UER-py does (convert.uer.use_uer_layer_norm) unless uer_layer_norm is False, so the
        tools give UER-py's outputs for UER-py's models."""
        from uer_ds.models.io import model_from_state

        ckpt = self.checkpoint(cfg)
        config = ckpt.config.replace(kernels=kernels) if kernels else ckpt.config
        check_kernels(config.kernels, device, self.flag)
        model = model_from_state(config, {k: v.float() for k, v in ckpt.state.items()}, str(self.path),
                                 device=device)
        if self.kind == "uer" and uer_layer_norm:
            from uer_ds.convert.uer import use_uer_layer_norm

            use_uer_layer_norm(model)
        return model.eval()

    def task_model(self, build_heads: Callable[[ModelConfig, dict], dict], kernels: Optional[str] = None,
                   device: Union[str, torch.device] = "cpu"):
        """(TaskModel in eval mode, task info) of a task directory; `build_heads(cfg, info)` makes its heads,
        `kernels` (--kernels) the implementation it runs with."""
        from uer_ds.tasks.model import load_task_model

        info = self.task_info()
        cfg = self.own_config()
        if kernels and kernels != cfg.kernels:
            cfg = cfg.replace(kernels=kernels)
        check_kernels(cfg.kernels, device, self.flag)
        model, _ = load_task_model(self.path, lambda saved, i: build_heads(cfg, i), device=device, config=cfg)
        return model, info

    def uer_task_model(self, cfg: ModelConfig, kind: str, task_name: str, spec_of: Callable[[dict], dict],
                       build_heads: Callable[[ModelConfig, dict], dict], device: Union[str, torch.device] = "cpu"):
        """(TaskModel, its head's spec) of a model UER-py's finetune/run_*.py wrote (a .bin with UER-py's
        names): the body converted for `cfg`, the head `kind` (convert.uer.UER_HEADS) under our names,
        `spec_of(head tensors)` its settings.  Computes with UER-py's LayerNorm, so the outputs are UER-py's."""
        from uer_ds.convert.uer import UER_HEADS, uer_head_state, use_uer_layer_norm
        from uer_ds.models.io import load_state_dict_checked
        from uer_ds.tasks.model import TaskModel, body_config

        head = uer_head_state(self.state(), kind, task_name)
        if not head:
            raise ValueError(f"{self.path} has no {task_name} head (UER-py's {', '.join(UER_HEADS[kind])}): was it "
                             f"fine-tuned by UER-py's run_{task_name}.py?")
        spec = spec_of(head)
        body = self._uer_checkpoint(body_config(cfg))
        check_kernels(cfg.kernels, device, self.flag)
        with torch.device("meta"):
            model = TaskModel(cfg, build_heads(cfg, {task_name: spec}))
        model = model.to_empty(device=device)
        model.init_weights()
        load_state_dict_checked(model, {**body.state, **head}, str(self.path), strict=True)
        return use_uer_layer_norm(model).eval(), spec

    # ---- ONNX -------------------------------------------------------------------------------------
    def _onnx_info(self) -> dict:
        from uer_ds.tasks.onnx import onnx_metadata

        metadata = onnx_metadata(str(self.path))
        if ONNX_TASK_KEY not in metadata:
            raise ValueError(f"{self.flag} '{self.path}': an ONNX model without uer_ds's task metadata "
                             f"({ONNX_TASK_KEY}); export it with `uer-ds export onnx`")
        return json.loads(metadata[ONNX_TASK_KEY])

    def onnx_forward(self) -> tuple[Callable[[dict], Any], dict]:
        """(forward(batch) -> what the exported head's PyTorch predict returns (a classifier's logits, NER's tag
        ids, CMRC's (start, end) logits; uer_ds.tasks.onnx.onnx_predictor), task info of the exported head)
        through onnxruntime."""
        from uer_ds.tasks import TASKS
        from uer_ds.tasks.onnx import onnx_metadata, onnx_predictor, onnx_session

        info = self._onnx_info()
        task = TASKS.get(info.get("task"))
        if task is None:
            raise ValueError(f"{self.flag} '{self.path}': an ONNX model for task '{info.get('task')}', which this "
                             f"version does not know")
        host = json.loads(onnx_metadata(str(self.path)).get(ONNX_HOST_KEY, "{}"))
        spec = next(iter(info["heads"].values()))
        return onnx_predictor(onnx_session(str(self.path)), task, spec, host), info


def _looks_like_uer(state: dict[str, torch.Tensor]) -> bool:
    from uer_ds.convert.uer import looks_like_uer

    return looks_like_uer(state)


def _with_vocab(cfg: ModelConfig, state: dict[str, torch.Tensor]) -> ModelConfig:
    """vocab_size 0 (a UER-py config) taken from the word embedding of `state` (either naming)."""
    if cfg.vocab_size:
        return cfg
    for key in ("embedding.word.embedding.weight", "embedding.word_embedding.weight"):
        if key in state:
            return cfg.replace(vocab_size=int(state[key].shape[0]))
    return cfg


def check_kernels(kernels: str, device: Union[str, torch.device], flag: str = "--kernels") -> None:
    """--kernels triton where it cannot run (no CUDA device, no Triton interpreter) is an error now, naming
    the flag, instead of a failure in the first forward pass."""
    if kernels != "triton" or torch.device(device).type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1":
        return
    raise ValueError(f"--kernels triton: the Triton kernels need a CUDA device (this model is built on "
                     f"{torch.device(device)}) or the Triton interpreter (TRITON_INTERPRET=1); use --kernels auto "
                     "or torch")


__all__ = ["INFER_KINDS", "KINDS", "MODEL_KINDS", "ModelSource", "check_kernels", "config_beside", "format_hint",
           "resolve_model"]
