"""`uer-ds bench kernels`: the command, its table and its JSON (a CPU smoke run through the interpreter)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

# first: sets up Triton's interpreter before any kernel import; triton_interpreter is an autouse fixture
from kernel_helpers import DEVICE, triton_interpreter  # noqa: F401


def _uer_ds(*args, env_extra=None, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the command sets it itself
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "uer_ds", "bench", "kernels", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def test_interpreter_smoke_run_writes_table_json_and_chart(tmp_path):
    out = _uer_ds("--interpret", "--hidden", "128", "--out", str(tmp_path / "k.json"))
    assert out.returncode == 0, out.stderr
    assert "interpreter smoke run: timings meaningless" in out.stdout
    assert "triton/torch" in out.stdout and "triton/sdpa" in out.stdout
    result = json.loads((tmp_path / "k.json").read_text())
    assert result["device"] == "CPU (Triton interpreter)" and result["interpret"] is True
    ln, attn = result["layer_norm"], result["attention"]
    assert {(r["provider"], r["mode"]) for r in ln} == {(p, m) for p in ("triton", "torch")
                                                         for m in ("fwd", "bwd", "fwd+bwd")}
    assert all(r["ms"] > 0 and r["GB/s"] > 0 for r in ln)
    assert {(r["padded"], r["causal"]) for r in attn} == {(p, c) for p in (False, True) for c in (False, True)}
    assert {r["provider"] for r in attn} == {"triton", "torch", "sdpa"}
    assert all(r["ms"] > 0 and r["TFLOP/s"] > 0 for r in attn), [r for r in attn if not r.get("ms")]
    pytest.importorskip("matplotlib")
    assert (tmp_path / "k.png").stat().st_size > 10_000


@pytest.mark.skipif(DEVICE == "cuda", reason="checks the message on a machine without a GPU")
def test_without_a_gpu_it_says_so(tmp_path):
    out = _uer_ds("--out", str(tmp_path / "unused.json"))
    assert out.returncode == 1
    assert "bench kernels needs a CUDA GPU and found none" in out.stderr and "--interpret" in out.stderr
    assert not (tmp_path / "unused.json").exists()


def test_listed_by_bench_help():
    out = subprocess.run([sys.executable, "-m", "uer_ds", "bench", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "kernels" in out.stdout


@pytest.mark.slow
def test_kernels_compile_for_an_h100_without_one():
    """Triton's compiler (not the interpreter) accepts the riskiest variants: ptxas for sm_90 ships in the wheel."""
    import triton

    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    if not os.path.exists(ptxas):
        pytest.skip(f"this triton wheel has no ptxas ({ptxas})")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-m", "uer_ds.kernels.compile_check", "--quick"], capture_output=True,
                         text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "compiled 7 kernel variants for sm_90" in out.stdout
