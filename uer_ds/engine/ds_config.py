"""DeepSpeed configs: read, check, and the one audited function that writes the command line's numbers
into them.

A ds_config holds engine settings only (ZeRO stage, offload, precision, buckets, pipeline).  Batch
sizes, accumulation, learning rate, optimizer hyper-parameters, clipping and the schedule come from
the uer_ds command line.  A value present in both with different values is an error naming both
(TencentPretrain users trip over exactly that); combinations DeepSpeed ignores or rejects are
errors before DeepSpeed starts.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Optional, Union

from uer_ds.config import TrainConfig
from uer_ds.textfile import load_json

SHIPPED_DS_CONFIG_DIR = Path(__file__).resolve().parents[2] / "ds_configs"
OPTIMIZERS = ("Adam", "AdamW")
OFFLOAD_DEVICES = ("cpu", "nvme", "none")


def resolve_ds_config_path(path: Union[str, os.PathLike]) -> Path:
    """A file as given, else a shipped name: `zero2` -> ds_configs/zero2.json."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    shipped = SHIPPED_DS_CONFIG_DIR / f"{str(path).removesuffix('.json')}.json"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in SHIPPED_DS_CONFIG_DIR.glob("*.json"))
    raise FileNotFoundError(f"deepspeed_config '{path}': no such file, nor a shipped name ({', '.join(names)})")


def load_ds_config(path: Union[str, os.PathLike]) -> tuple[dict, str]:
    resolved = resolve_ds_config_path(path)
    values = load_json(resolved, "deepspeed_config")
    if not isinstance(values, dict):
        raise ValueError(f"{resolved}: a DeepSpeed config must be a JSON object")
    return values, str(resolved)


def default_ds_config_name(model_config: Any, world: int, seq_length: int, pipeline_stages: int = 1) -> tuple[str, str]:
    """The shipped ds_config a job takes without --deepspeed_config, and why: `pipeline` with
    --pipeline_stages, else `uer_ds.engine.plan.default_ds_config` for the job's process count (one: zero0;
    several: the planner's ZeRO stage)."""
    if pipeline_stages > 1:
        return "pipeline", f"--pipeline_stages {pipeline_stages}"
    from uer_ds.engine.plan import default_ds_config

    return default_ds_config(model_config, world, seq_length)


def choose_ds_config(engine: Any, model_config: Any, world: int, seq_length: int) -> tuple[str, list[str]]:
    """The one place a job's ds_config name is chosen: --deepspeed_config, else the job's default
    (default_ds_config_name), then UER-py's --fp16 applied (fp16_variant).  `engine` is an
    uer_ds.config.EngineConfig.  Returns (name for load_ds_config, note lines for the user)."""
    notes = []
    name = engine.deepspeed_config
    if name is None:  # the default follows the job
        name, why = default_ds_config_name(model_config, world, seq_length, engine.pipeline_stages)
        if name != "zero0":  # one process: no ZeRO, as the engine line says
            notes.append(f"--deepspeed_config not given: {name} ({why})")
    name, fp16_notes = fp16_variant(name, engine.fp16, engine.fp16_opt_level)
    return name, notes + fp16_notes


def fp16_variant(name: str, fp16: bool, fp16_opt_level: Optional[str]) -> tuple[str, list[str]]:
    """--deepspeed_config after UER-py's --fp16, and note lines for the user: --fp16 turns a shipped
    name into its fp16 variant; a ds_config file must enable fp16 itself.  ValueError: --fp16_opt_level
    without --fp16, --fp16 with a bf16 config, or a file without fp16 enabled."""
    name, notes = str(name), []
    if fp16_opt_level and not fp16:
        raise ValueError(f"--fp16_opt_level {fp16_opt_level} needs --fp16")
    if not fp16:
        return name, notes
    base = name.removesuffix(".json")
    if (SHIPPED_DS_CONFIG_DIR / f"{base}.json").is_file() and not Path(name).is_file():
        if base.endswith("_bf16"):
            raise ValueError(f"--fp16 with --deepspeed_config {name}: that config trains in bf16; choose one precision")
        if not base.endswith("_fp16"):
            name = f"{base}_fp16"
        if fp16_opt_level:
            notes.append(f"note: --fp16_opt_level {fp16_opt_level} is apex's; DeepSpeed's fp16 ({name}) keeps "
                         "fp32 master weights with dynamic loss scaling")
        return name, notes
    values, source = load_ds_config(name)
    if not (values.get("fp16") or {}).get("enabled", False):
        raise ValueError(f"--fp16 with --deepspeed_config {source}: that file does not enable fp16; add "
                         "\"fp16\": {\"enabled\": true} to it, or give a shipped name (zero0..zero3, *_offload)")
    return name, notes


def zero_stage(ds: dict) -> int:
    return int(ds.get("zero_optimization", {}).get("stage", 0))


def _offload_device(ds: dict, key: str) -> str:
    section = ds.get("zero_optimization", {}).get(key) or {}
    return str(section.get("device", "none"))


def offloads_optimizer(ds: dict) -> bool:
    return _offload_device(ds, "offload_optimizer") != "none"


def offloads_params(ds: dict) -> bool:
    return _offload_device(ds, "offload_param") != "none"


AUTOCAST_DTYPES = {"bfloat16": "bf16", "bf16": "bf16", "torch.bfloat16": "bf16",
                   "float16": "fp16", "fp16": "fp16", "half": "fp16", "torch.float16": "fp16"}


def autocast(ds: dict) -> bool:
    """The config trains fp32 weights with torch.autocast compute (DeepSpeed's `torch_autocast`)."""
    return bool((ds.get("torch_autocast") or {}).get("enabled"))


def precision(ds: dict) -> str:
    """The compute precision: bf16, fp16 (DeepSpeed's wrappers or torch autocast) or fp32."""
    if ds.get("bf16", {}).get("enabled"):
        return "bf16"
    if ds.get("fp16", {}).get("enabled"):
        return "fp16"
    if autocast(ds):
        return AUTOCAST_DTYPES.get(str(ds["torch_autocast"].get("dtype")), "fp32")
    return "fp32"


def describe_precision(ds: dict) -> str:
    return f"{precision(ds)} (torch autocast)" if autocast(ds) else precision(ds)


def check_engine_settings(ds: dict, source: str, pipeline_stages: int, on_cpu: bool) -> None:
    """Reject what DeepSpeed would ignore silently or fail on later, naming the setting and the rule."""
    stage = zero_stage(ds)
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"{source}: zero_optimization.stage is {stage}: must be 0, 1, 2 or 3")
    for key in ("offload_optimizer", "offload_param"):
        device = _offload_device(ds, key)
        if device not in OFFLOAD_DEVICES:
            raise ValueError(f"{source}: zero_optimization.{key}.device is '{device}': must be one of "
                             f"{', '.join(OFFLOAD_DEVICES)}")
    if offloads_params(ds) and stage != 3:
        raise ValueError(f"{source}: zero_optimization.offload_param needs ZeRO stage 3 (stage is {stage}); "
                         "DeepSpeed ignores it otherwise. Use offload_optimizer for stages 1-2")
    if offloads_optimizer(ds) and stage == 0:
        raise ValueError(f"{source}: zero_optimization.offload_optimizer needs ZeRO stage 1, 2 or 3 (stage is 0)")
    if ds.get("bf16", {}).get("enabled") and ds.get("fp16", {}).get("enabled"):
        raise ValueError(f"{source}: bf16.enabled and fp16.enabled are both true: choose one")
    _check_fast_paths(ds, source, stage, pipeline_stages)
    if on_cpu and precision(ds) == "fp16":
        raise ValueError(f"{source}: fp16 does not run on CPU (DeepSpeed: 'Type fp16 is not supported'); "
                         "use a bf16 or fp32 config, or a GPU")
    optimizer = ds.get("optimizer")
    if optimizer is not None and optimizer.get("type") not in OPTIMIZERS:
        raise ValueError(f"{source}: optimizer.type is '{optimizer.get('type')}': uer_ds trains with "
                         f"{' or '.join(OPTIMIZERS)} (DeepSpeed's fused/CPU implementations)")
    if "scheduler" in ds:
        raise ValueError(f"{source}: has a 'scheduler' section: the schedule comes from the command line "
                         "(--scheduler, --warmup, --total_steps, --learning_rate); remove it")
    if pipeline_stages > 1 and stage > 1:
        raise ValueError(f"{source}: ZeRO stage {stage} with --pipeline_stages {pipeline_stages}: DeepSpeed's "
                         "pipeline engine supports ZeRO stage 0 or 1 only")
    if pipeline_stages > 1 and offloads_optimizer(ds):
        raise ValueError(f"{source}: optimizer offload with --pipeline_stages {pipeline_stages} is not supported "
                         "by DeepSpeed's pipeline engine")


def _check_fast_paths(ds: dict, source: str, stage: int, pipeline_stages: int) -> None:
    """Combinations that make DeepSpeed take a per-parameter host loop for nothing are errors that name
    the key and the fix (read from DeepSpeed 0.19's runtime/engine.py and zero/stage_1_and_2.py; counted
    by `uer-ds bench overhead`)."""
    bf16 = ds.get("bf16") or {}
    if autocast(ds):
        dtype = str(ds["torch_autocast"].get("dtype"))
        if dtype not in AUTOCAST_DTYPES:
            raise ValueError(f"{source}: torch_autocast.dtype is '{dtype}': must be bfloat16 or float16")
        if bf16.get("enabled") or (ds.get("fp16") or {}).get("enabled"):
            raise ValueError(f"{source}: torch_autocast and {'bf16' if bf16.get('enabled') else 'fp16'}.enabled are "
                             "both set: choose one precision (torch_autocast keeps fp32 weights, bf16/fp16 keep "
                             "16-bit weights)")
    if not bf16.get("enabled"):
        return
    if stage == 0 and pipeline_stages == 1:
        raise ValueError(f"{source}: bf16.enabled at ZeRO stage 0 trains through DeepSpeed's fp16 loss-scaling "
                         "wrapper (FP16_Optimizer: an overflow check per parameter tensor, one host sync each, "
                         "~5,900 ops per step for BERT-large). Use \"torch_autocast\": {\"enabled\": true, \"dtype\": "
                         "\"bfloat16\"} instead (fp32 master weights, bf16 compute; the shipped zero0_bf16)")
    if stage in (1, 2) and bf16.get("check_grad_overflow", True):
        raise ValueError(f"{source}: bf16.check_grad_overflow is true (DeepSpeed's default) at ZeRO stage {stage}: "
                         "bf16 has fp32's range and needs no overflow check, which costs a per-parameter loop "
                         "(~5,100 ops and 2 host syncs per step for BERT-large). Set \"bf16\": {\"enabled\": true, "
                         "\"check_grad_overflow\": false} (the shipped zero1_bf16 / zero2_bf16)")


def _set(ds: dict, dotted: str, value: Any, flag: str, source: str) -> None:
    """Write one command-line value into the dict; a different value already there is an error."""
    *parents, leaf = dotted.split(".")
    node = ds
    for key in parents:
        node = node.setdefault(key, {})
    if leaf in node and node[leaf] != value and node[leaf] != "auto":
        raise ValueError(f"{source} sets {dotted} = {node[leaf]!r} but {flag} is {value!r}: "
                         f"this number comes from the command line; remove it from the DeepSpeed config "
                         "or make the two agree")
    node[leaf] = value


def _takes_torch_adamw(ds: dict, on_cpu: bool) -> bool:
    """Whether the Adam step is torch's fused AdamW: always on the CPU (FusedAdam is a CUDA kernel); on a GPU
    unless the optimizer is offloaded (DeepSpeed's CPU Adam), the ds_config asks for FusedAdam
    (`"torch_adam": false`), or fp16 runs without ZeRO, where DeepSpeed's fused fp16 wrapper needs FusedAdam
    (engine.py `_configure_fp16_optimizer`: any other optimizer gets the per-tensor FP16_UnfusedOptimizer)."""
    if offloads_optimizer(ds):
        return False
    if on_cpu:
        return True
    asked = ds.get("optimizer", {}).get("params", {}).get("torch_adam")
    return asked is not False and not (ds.get("fp16", {}).get("enabled") and zero_stage(ds) == 0)


def build_ds_config(ds: dict, source: str, train: TrainConfig, data_parallel_size: int,
                    pipeline_stages: int = 1, on_cpu: bool = True) -> dict:
    """The DeepSpeed dict the engine starts with: the file's engine settings plus the command line's
    numbers (the one place they are written)."""
    check_engine_settings(ds, source, pipeline_stages, on_cpu)
    out = copy.deepcopy(ds)
    _set(out, "train_micro_batch_size_per_gpu", train.batch_size, "--batch_size", source)
    _set(out, "gradient_accumulation_steps", train.accumulation_steps, "--accumulation_steps", source)
    _set(out, "train_batch_size", train.batch_size * train.accumulation_steps * data_parallel_size,
         "--batch_size x --accumulation_steps x data-parallel size", source)
    _set(out, "gradient_clipping", train.max_grad_norm, "--max_grad_norm", source)
    out.setdefault("optimizer", {}).setdefault("type", "AdamW")
    _set(out, "optimizer.params.lr", train.learning_rate, "--learning_rate", source)
    _set(out, "optimizer.params.betas", [train.adam_beta1, train.adam_beta2], "--adam_beta1/--adam_beta2", source)
    _set(out, "optimizer.params.eps", train.adam_eps, "--adam_eps", source)
    # weight decay is set per parameter group (matrices only); the group values override this one
    _set(out, "optimizer.params.weight_decay", train.weight_decay, "--weight_decay", source)
    if _takes_torch_adamw(out, on_cpu):
        # torch's fused AdamW (one multi-tensor kernel per group, as DeepSpeed's FusedAdam) instead of FusedAdam,
        # which DeepSpeed JIT-compiles on first use: about a minute on a GPU machine, for nothing on a CPU, and
        # a build killed half-way leaves a lock that stalls every later job.  Torch's CPU default without
        # `fused` is a loop per tensor.
        params = out["optimizer"]["params"]
        params["torch_adam"] = True
        if "foreach" not in params:
            params.setdefault("fused", True)
    out.setdefault("steps_per_print", 10**9)  # uer_ds reports itself; keep DeepSpeed's own log quiet
    out.setdefault("wall_clock_breakdown", False)
    return out
