"""Issue #9 on CUDA (skipped without a GPU): the training step, run through `uer-ds bench pretrain` with
`torch.cuda.set_sync_debug_mode("error")` over its timed steps, never makes the host wait for the device;
with and without torch.compile.  Speed is the benchmark's business, not this test's."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("ds_config, compile_", [("zero0_bf16", False), ("zero0_bf16", True), ("zero0", False)])
def test_training_step_has_no_host_sync_on_cuda(tmp_path, ds_config, compile_):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "uer_ds", "bench", "pretrain", "--config_path", "bert/base", "--deepspeed_config",
           ds_config, "--batch_size", "16", "--seq_length", "128", "--steps", "5", "--warmup_steps", "3",
           "--check_syncs", "--json_path", str(out), *(["--compile"] if compile_ else [])]
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    result = json.loads(out.read_text())
    assert result["samples_per_s"] > 0 and result["mfu"] > 0
