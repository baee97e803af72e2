"""DeepSpeed configs: command-line numbers written in one place, conflicts and bad combinations
rejected before DeepSpeed starts, every shipped config valid."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT, shared
from uer_ds.config import TrainConfig
from uer_ds.engine.ds_config import build_ds_config, check_engine_settings, load_ds_config

TRAIN = TrainConfig(total_steps=10, batch_size=32, accumulation_steps=2, learning_rate=1e-4)


def test_command_line_numbers_are_written_into_the_dict():
    ds, source = load_ds_config("zero2")
    out = build_ds_config(ds, source, TRAIN, data_parallel_size=4)
    assert out["train_micro_batch_size_per_gpu"] == 32
    assert out["gradient_accumulation_steps"] == 2
    assert out["train_batch_size"] == 32 * 2 * 4
    assert out["optimizer"] == {"type": "AdamW", "params": {"lr": 1e-4, "betas": [0.9, 0.999], "eps": 1e-6,
                                                           "weight_decay": 0.01, "torch_adam": True,
                                                           "fused": True}}  # torch's one-op CPU AdamW
    gpu = build_ds_config(ds, source, TRAIN, data_parallel_size=4, on_cpu=False)
    assert gpu["optimizer"] == out["optimizer"]  # on CUDA too: torch's fused AdamW, no FusedAdam JIT build
    assert out["gradient_clipping"] == 1.0
    assert ds == load_ds_config("zero2")[0]  # the file's dict is not modified


def test_a_value_in_both_places_must_agree(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 1}}))
    ds, source = load_ds_config(path)
    with pytest.raises(ValueError, match=r"c.json sets train_micro_batch_size_per_gpu = 1 but --batch_size is 32"):
        build_ds_config(ds, source, TRAIN, 1)
    path.write_text(json.dumps({"train_micro_batch_size_per_gpu": 32, "gradient_accumulation_steps": "auto"}))
    ds, source = load_ds_config(path)
    assert build_ds_config(ds, source, TRAIN, 1)["gradient_accumulation_steps"] == 2  # equal / auto is fine


def test_tencentpretrain_configs_are_rejected_with_their_flaws_named():
    ds, source = load_ds_config(shared("models/deepspeed_config.json"))
    with pytest.raises(ValueError, match="offload_param needs ZeRO stage 3 \\(stage is 2\\)"):
        build_ds_config(ds, source, TRAIN, 1, on_cpu=False)
    del ds["zero_optimization"]["offload_param"]
    with pytest.raises(ValueError, match=r"sets train_micro_batch_size_per_gpu = 1 but --batch_size is 32"):
        build_ds_config(ds, source, TRAIN, 1, on_cpu=False)
    del ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]
    with pytest.raises(ValueError, match=r"sets optimizer.params.lr = 2e-05 but --learning_rate is 0.0001"):
        build_ds_config(ds, source, TRAIN, 1, on_cpu=False)


@pytest.mark.parametrize("change, pattern", [
    ({"scheduler": {"type": "WarmupLR"}}, "has a 'scheduler' section: the schedule comes from the command line"),
    ({"fp16": {"enabled": True}}, "fp16 does not run on CPU"),
    ({"bf16": {"enabled": True}, "fp16": {"enabled": True}}, "bf16.enabled and fp16.enabled are both true"),
    ({"zero_optimization": {"stage": 4}}, "zero_optimization.stage is 4: must be 0, 1, 2 or 3"),
    ({"zero_optimization": {"stage": 0, "offload_optimizer": {"device": "cpu"}}}, "needs ZeRO stage 1, 2 or 3"),
    ({"zero_optimization": {"stage": 3, "offload_param": {"device": "gpu"}}}, "device is 'gpu': must be one of"),
    ({"optimizer": {"type": "Lamb"}}, "optimizer.type is 'Lamb'"),
    # the slow paths DeepSpeed takes silently (issue #9)
    ({"bf16": {"enabled": True}}, r"bf16.enabled at ZeRO stage 0 trains through DeepSpeed's fp16 loss-scaling "
                                  r"wrapper \(FP16_Optimizer: an overflow check per parameter tensor.*torch_autocast"),
    ({"bf16": {"enabled": True}, "zero_optimization": {"stage": 1}},
     r"bf16.check_grad_overflow is true \(DeepSpeed's default\) at ZeRO stage 1.*\"check_grad_overflow\": false"),
    ({"bf16": {"enabled": True, "check_grad_overflow": True}, "zero_optimization": {"stage": 2}},
     "bf16.check_grad_overflow is true"),
    ({"torch_autocast": {"enabled": True, "dtype": "int8"}}, "torch_autocast.dtype is 'int8': must be bfloat16"),
    ({"torch_autocast": {"enabled": True, "dtype": "bfloat16"}, "bf16": {"enabled": True}},
     "torch_autocast and bf16.enabled are both set: choose one precision"),
])
def test_bad_combinations(change, pattern):
    with pytest.raises(ValueError, match=pattern):
        check_engine_settings(change, "x.json", pipeline_stages=1, on_cpu=True)


def test_pipeline_rules():
    with pytest.raises(ValueError, match="ZeRO stage 2 with --pipeline_stages 2"):
        check_engine_settings({"zero_optimization": {"stage": 2}}, "x.json", pipeline_stages=2, on_cpu=True)


@pytest.mark.parametrize("path", sorted((ROOT / "ds_configs").glob("*.json")), ids=lambda p: p.stem)
def test_every_shipped_config_is_valid(path: Path):
    ds, source = load_ds_config(path)
    stages = 2 if path.stem.startswith("pipeline") else 1
    out = build_ds_config(ds, source, TRAIN, 2, pipeline_stages=stages, on_cpu=False)
    assert out["train_batch_size"] == 32 * 2 * 2
    assert set(ds) <= {"zero_optimization", "bf16", "fp16", "torch_autocast"}  # engine settings only


def test_bf16_configs_name_their_precision():
    from uer_ds.engine.ds_config import describe_precision, precision

    assert describe_precision(load_ds_config("zero0_bf16")[0]) == "bf16 (torch autocast)"
    assert precision(load_ds_config("zero1_bf16")[0]) == "bf16" and precision(load_ds_config("zero1")[0]) == "fp32"
    ok = {"bf16": {"enabled": True, "check_grad_overflow": False}, "zero_optimization": {"stage": 3}}
    check_engine_settings(ok, "x.json", pipeline_stages=1, on_cpu=True)  # ZeRO-3 never checks bf16 overflow


def test_default_ds_config_follows_the_job():
    """No --deepspeed_config: zero0 for one process (nothing to partition), the pipeline config with
    --pipeline_stages, and a ZeRO stage >= 1 for several processes (here CPUs: zero1)."""
    from uer_ds.config import ModelConfig
    from uer_ds.engine.ds_config import default_ds_config_name
    from uer_ds.engine.plan import plan

    cfg = ModelConfig.from_json("bert/base", {"vocab_size": 21128})
    assert default_ds_config_name(cfg, 1, 128) == ("zero0", "one process: nothing for ZeRO to partition")
    assert default_ds_config_name(cfg, 1, 128, pipeline_stages=2) == ("pipeline", "--pipeline_stages 2")
    assert default_ds_config_name(cfg, 4, 128) == ("zero1", "4 processes on CPUs: data parallel with ZeRO-1")
    # the planner never recommends stage 0 for data parallelism, always it for one GPU
    assert plan(cfg, 8, 80.0, seq_length=128)[1].setup.name == "zero1"
    assert plan(cfg, 1, 80.0, seq_length=128)[1].setup.name == "zero0"


@pytest.mark.parametrize("name, extra, fused_adam", [
    ("zero0_bf16", {}, False),  # torch's fused AdamW
    ("zero2_bf16", {}, False),
    ("zero0_fp16", {}, True),  # DeepSpeed's fused fp16 wrapper needs FusedAdam (else FP16_UnfusedOptimizer)
    ("zero1_fp16", {}, False),
    ("zero0_bf16", {"optimizer": {"type": "AdamW", "params": {"torch_adam": False}}}, True),  # asked for in the file
])
def test_which_adam_on_a_gpu(name, extra, fused_adam):
    """DeepSpeed builds FusedAdam where `torch_adam` is absent or false (engine.py _configure_basic_optimizer)."""
    ds, source = load_ds_config(name)
    ds = {**ds, **extra}
    params = build_ds_config(ds, source, TRAIN, 1, on_cpu=False)["optimizer"]["params"]
    assert bool(params.get("torch_adam")) is not fused_adam
    assert params.get("fused", False) is not fused_adam
    offload, offload_source = load_ds_config("zero2_offload_bf16")
    assert "torch_adam" not in build_ds_config(offload, offload_source, TRAIN, 1, on_cpu=False)["optimizer"]["params"]
