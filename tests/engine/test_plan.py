"""`uer-ds plan`: model-state accounting against the ZeRO paper's worked example, activation memory
against Korthikanti et al.'s formula, and the recommendation logic."""
from __future__ import annotations

import json

import pytest

from uer_ds.cli import main
from uer_ds.config import ModelConfig
from uer_ds.engine.plan import SETUPS, activation_bytes_per_sample, model_state_bytes, parameter_counts

GB = 1e9
SETUP = {s.name: s for s in SETUPS}


def test_model_states_reproduce_the_zero_paper_example():
    # Rajbhandari et al. 2020, Figure 1: a 7.5B-parameter model, 64 GPUs, mixed-precision Adam (K = 12):
    # baseline 120 GB, P_os 31.4 GB, P_os+g 16.6 GB, P_os+g+p 1.9 GB per GPU.
    psi, n = 7.5e9, 64
    assert model_state_bytes(SETUP["zero0"], psi, 0, n, 1, True)[0] / GB == pytest.approx(120, rel=1e-3)
    assert model_state_bytes(SETUP["zero1"], psi, 0, n, 1, True)[0] / GB == pytest.approx(31.4, rel=2e-3)
    # DeepSpeed's own estimators (used for stages 2 and 3) also count the fp32 gradient copy: 2 bytes
    # more per parameter over N than the paper, i.e. within 4% and 15% of its figures here.
    assert model_state_bytes(SETUP["zero2"], psi, 0, n, 1, True)[0] / GB == pytest.approx(16.6, rel=0.04)
    assert model_state_bytes(SETUP["zero3"], psi, 0, n, 1, True)[0] / GB == pytest.approx(1.9, rel=0.15)


def test_activation_formula():
    # Korthikanti et al. 2022: s*b*h*(34 + 5*a*s/h) bytes per layer at 16-bit, no tensor parallelism
    cfg = ModelConfig.from_json("bert/base", {"vocab_size": 21128, "target": ["sp"], "tie_weights": False})
    s, h, a = 512, 768, 12
    assert activation_bytes_per_sample(cfg, s, True, False, False) == pytest.approx(12 * s * h * (34 + 5 * a * s / h))
    assert activation_bytes_per_sample(cfg, s, True, True, False) == pytest.approx(12 * s * h * 34)  # flash


def test_parameter_counts_match_the_model():
    cfg = ModelConfig.from_json("bert/base", {"vocab_size": 21128})
    total, largest = parameter_counts(cfg)
    assert total == 102_883_210
    assert largest == 21128 * 768 + 21128  # the MLM output layer: the tied word matrix and its bias


def test_plan_command_prints_a_table_and_recommends(capsys, tmp_path):
    out = tmp_path / "plan.json"
    assert main(["plan", "--config_path", "bert/large", "--gpus", "1", "--gpu_memory", "8", "--seq_length", "128",
                 "--vocab_size", "21128", "--json_path", str(out)]) == 0
    text = capsys.readouterr().out
    plan = json.loads(out.read_text())
    rows = {r["ds_config"]: r for r in plan["rows"]}
    # BERT-large (335M) in 8 GB: mixed-precision Adam states alone (16 B/param = 5.4 GB) leave little
    # room without offload; offloading the optimizer leaves the most
    assert rows["zero2_offload"]["micro_batch"] >= rows["zero0"]["micro_batch"]
    assert plan["recommended"] is not None and "recommendation: --deepspeed_config" in text
    assert main(["plan", "--config_path", "bert/large", "--gpus", "1", "--gpu_memory", "1", "--vocab_size", "21128"]) == 0
    assert "nothing fits" in capsys.readouterr().out
    assert main(["plan", "--config_path", "bert/tiny", "--gpus", "0"]) == 1
