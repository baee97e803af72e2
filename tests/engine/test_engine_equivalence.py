"""Tier 4: ZeRO 1/2/3, offload and a 2-stage pipeline on 2 CPU processes (gloo, deepspeed launcher)
train exactly like a plain single-process PyTorch loop on the same global batches; a resumed run
continues the same loss curve; export and zero_to_fp32 equal the live model.

Tolerances (fp32): 2e-5 on losses without offload (summation order differs between reductions),
1e-4 with DeepSpeed's CPU Adam (offload), whose vectorised update rounds differently from torch's.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from engine_utils import launch
from uer_ds.config import TrainConfig
from uer_ds.engine.engine import lr_lambda, parameter_groups
from uer_ds.models import build_model

sys.path.insert(0, str(Path(__file__).parent))
import driver  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("deepspeed_ops")]
STEPS, BATCH, ACCUM, WORLD = 8, 2, 2, 2


def reference_losses(kind: str, init: dict, global_batch: int) -> list[float]:
    """Plain PyTorch: one process, torch AdamW, the same schedule and clipping, each step's whole global
    batch in one forward (so every loss is the mean over the global batch's predictions, which is what
    the engine's normalisation makes of micro-batches on several ranks)."""
    cfg = driver.model_config(kind)
    train_cfg = TrainConfig(total_steps=STEPS, batch_size=global_batch, accumulation_steps=1, learning_rate=1e-3,
                            warmup=0.25, report_steps=1, save_checkpoint_steps=4, seed=3)
    model = build_model(cfg)
    model.load_state_dict(init, strict=False)
    model.tie_weights()
    optimizer = torch.optim.AdamW(parameter_groups(model, train_cfg.weight_decay), lr=train_cfg.learning_rate,
                                  betas=(train_cfg.adam_beta1, train_cfg.adam_beta2), eps=train_cfg.adam_eps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(train_cfg))
    losses = []
    batches = driver.micro_batches(cfg, train_cfg, 0, 1, 0)
    for _ in range(STEPS):
        batch = next(batches)
        result = model(batch["src"], batch["tgt"], batch["seg"])
        result.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(result.loss.item())
    return losses


@pytest.fixture(scope="module")
def init_states(tmp_path_factory):
    out = {}
    for kind in ("bert", "gpt"):
        torch.manual_seed(11)
        state = build_model(driver.model_config(kind)).state_dict()
        path = tmp_path_factory.mktemp("init") / f"{kind}.pt"
        torch.save(state, path)
        out[kind] = (path, state)
    return out


@pytest.fixture(scope="module")
def references(init_states):
    # 2 ranks x ACCUM micro-batches of BATCH == 1 process, one batch of BATCH * ACCUM * WORLD samples
    return {kind: reference_losses(kind, state, BATCH * ACCUM * WORLD) for kind, (_, state) in init_states.items()}


CASES = [  # (ds_config, model, pipeline stages, activation checkpointing, tolerance)
    ("zero1", "bert", 1, False, 2e-5),
    ("zero2", "gpt", 1, False, 2e-5),
    ("zero3", "bert", 1, True, 2e-5),
    ("zero2_offload", "bert", 1, False, 1e-4),
    ("zero3_offload", "gpt", 1, False, 1e-4),
    ("pipeline", "bert", 2, False, 2e-5),
    ("pipeline", "gpt", 2, True, 2e-5),
]


@pytest.mark.parametrize("ds_config, kind, stages, checkpointing, tol", CASES,
                         ids=[f"{c[0]}-{c[1]}{'-ckpt' if c[3] else ''}" for c in CASES])
def test_two_processes_match_single_process_and_resume(ds_config, kind, stages, checkpointing, tol, init_states,
                                                       references, tmp_path):
    init_path, _ = init_states[kind]
    expected = references[kind]
    out, metrics = tmp_path / "ckpt", tmp_path / "metrics.jsonl"
    # pipeline: the 2 processes are the 2 stages (data parallel 1), so each takes all micro-batches
    accumulation = ACCUM * WORLD if stages > 1 else ACCUM
    common = ["--model", kind, "--ds_config", ds_config, "--batch_size", str(BATCH), "--accumulation_steps",
              str(accumulation), "--pipeline_stages", str(stages), "--init", str(init_path), "--out", str(out),
              *(["--activation_checkpointing"] if checkpointing else [])]
    # one launch: steps 1-4 with a checkpoint at 4, then a fresh engine resumes from the files to step 8
    done = launch(["--steps", str(STEPS), "--resume_at", "4", "--metrics", str(metrics),
                   "--dump_live", str(tmp_path / "live.pt"), *common])
    assert done.returncode == 0, done.stdout[-3000:]
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    got = [r["loss"] for r in records]
    assert max(abs(a - b) for a, b in zip(got[:4], expected[:4])) < tol, (got, expected)
    assert max(abs(a - b) for a, b in zip(got[4:], expected[4:])) < tol, (got, expected)  # resumed
    assert all(math.isfinite(x) for x in got)
    assert (out / "global_step4").is_dir() and (out / "latest").read_text() == "global_step8"

    # export (our gatherer) equals the live model; DeepSpeed's zero_to_fp32 too where it applies
    from uer_ds.engine.checkpoint import export_state

    _, exported = export_state(out)
    if stages > 1:
        live = {}
        for rank in range(WORLD):
            live.update(torch.load(f"{tmp_path / 'live.pt'}.rank{rank}", weights_only=True))
    else:
        live = torch.load(tmp_path / "live.pt", weights_only=True)
    for key, value in live.items():
        torch.testing.assert_close(exported[key], value, rtol=0, atol=0, msg=key)
    if stages == 1:
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        theirs = get_fp32_state_dict_from_zero_checkpoint(str(out))
        for key, value in live.items():
            torch.testing.assert_close(theirs[key].float(), value, rtol=0, atol=0, msg=key)


def test_interrupted_save_keeps_the_previous_checkpoint(init_states, tmp_path):
    init_path, _ = init_states["bert"]
    out = tmp_path / "ckpt"
    common = ["--model", "bert", "--ds_config", "zero2", "--batch_size", str(BATCH), "--accumulation_steps",
              str(ACCUM), "--init", str(init_path), "--out", str(out), "--save_steps", "2"]
    crashed = launch(["--steps", "6", "--metrics", str(tmp_path / "m1.jsonl"), "--crash_in_save_at", "4", *common])
    assert crashed.returncode != 0
    assert (out / "global_step4").is_dir()  # DeepSpeed wrote its files ...
    assert (out / "latest").read_text() == "global_step2"  # ... but latest still names the last complete save
    resumed = launch(["--steps", "6", "--resume", "--metrics", str(tmp_path / "m2.jsonl"), *common])
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    steps = [json.loads(l)["step"] for l in (tmp_path / "m2.jsonl").read_text().splitlines()]
    assert steps == [3, 4, 5, 6]
    assert (out / "latest").read_text() == "global_step6"
