"""The GPU measurement's flow, checked on the CPU: every command line of launch/gpu_measure.sh parses with
today's CLI (its dry mode, what launch/gpu_preflight.sh runs), what comes back from $OUT fits the device
tool's limits, and launch/gpu_summary.py turns the benchmarks' real JSON into the tables."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import ROOT

SCRIPT = ROOT / "launch" / "gpu_measure.sh"


def _env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "TRITON_INTERPRET"))}
    (tmp_path / "no_wheels").mkdir(exist_ok=True)  # not the checkout's .whl/ (Python 3.12 wheels for the GPU image)
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}", OUT=str(tmp_path / "out"),
               GPU_SITE=str(tmp_path / "site"), GPU_WHEELS=str(tmp_path / "no_wheels"), DS_ACCELERATOR="cpu")
    return env


def _dry(tmp_path: Path, call: str, script: Path = SCRIPT) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script), "dry", call], cwd=ROOT, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("call, at_least", [("first", 9), ("second", 10)])
def test_every_command_line_of_the_gpu_calls_parses(tmp_path, call, at_least):
    proc = _dry(tmp_path, call)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    checked = [line for line in proc.stdout.splitlines() if line.startswith("== ") and ": dry " in line]
    assert len(checked) >= at_least and all(line.endswith("dry ok") for line in checked), "\n".join(checked)
    back = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert back == [f"gpu_{call}.tar.gz", f"steps_{call}.txt", f"summary_{call}.md"]  # 3 of the 8 that come back
    with tarfile.open(tmp_path / "out" / f"gpu_{call}.tar.gz") as archive:
        names = archive.getnames()
    assert "./steps.txt" in names and len([n for n in names if n.endswith(".txt")]) >= at_least


@pytest.mark.slow
def test_a_broken_command_line_fails_the_dry_run(tmp_path):
    broken = tmp_path / "gpu_measure.sh"
    text = SCRIPT.read_text()
    assert text.count("--warmup_steps 5") >= 2
    broken.write_text(text.replace("--warmup_steps 5", "--warmup_stepz 5"))
    proc = _dry(tmp_path, "first", broken)
    failed = [line for line in proc.stdout.splitlines() if "dry FAILED" in line]
    assert failed and any("pretrain_large_s128_b64_torch" in line for line in failed), proc.stdout[-3000:]
    assert "unrecognized arguments: --warmup_stepz" in proc.stdout


def test_parse_only_parses_and_runs_nothing(tmp_path):
    env = dict(os.environ, UER_DS_PARSE_ONLY="1")
    out = tmp_path / "never.json"
    good = subprocess.run([sys.executable, "-m", "uer_ds", "bench", "pretrain", "--config_path", "bert/large",
                           "--json_path", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert good.returncode == 0 and "arguments parse" in good.stdout and not out.exists()
    bad = subprocess.run([sys.executable, "-m", "uer_ds", "bench", "pretrain", "--batch_size", "many"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "invalid int value: 'many'" in bad.stderr


@pytest.mark.slow
def test_summary_tables_hold_the_benchmarks_figures(tmp_path):
    """Real outputs of `bench pretrain` (CPU, bert/tiny) and `bench kernels --interpret` (LayerNorm) -> tables."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    pretrain = tmp_path / "pretrain_tiny_s32_b4_torch.json"
    subprocess.run([sys.executable, "-m", "uer_ds", "bench", "pretrain", "--config_path", "bert/tiny", "--seq_length",
                    "32", "--batch_size", "4", "--steps", "2", "--warmup_steps", "1", "--json_path", str(pretrain)],
                   env=env, check=True, capture_output=True, timeout=600)
    kernels = tmp_path / "kernels_norm.json"
    subprocess.run([sys.executable, "-m", "uer_ds", "bench", "kernels", "--interpret", "--ops", "layer_norm",
                    "--hidden", "128", "--chart", "none", "--out", str(kernels)], env=env, check=True,
                   capture_output=True, timeout=600)
    (tmp_path / "steps.txt").write_text("== pretrain_tiny_s32_b4_torch: exit 0 after 9 s\n")
    table = subprocess.run([sys.executable, str(ROOT / "launch" / "gpu_summary.py"), str(tmp_path)], check=True,
                           capture_output=True, text=True).stdout
    r = json.loads(pretrain.read_text())
    row = next(line for line in table.splitlines() if line.startswith("| pretrain_tiny_s32_b4_torch |"))
    assert f"| {r['samples_per_s']:,.0f} | {r['tokens_per_s']:,.0f} |" in row
    ln = {row["provider"]: row for row in json.loads(kernels.read_text())["layer_norm"] if row["mode"] == "fwd+bwd"}
    line = next(line for line in table.split("## layer_norm")[1].splitlines() if line.startswith("| 128 |"))
    assert f"{ln['triton']['GB/s']:,.1f}" in line and f"{ln['triton']['GB/s'] / ln['torch']['GB/s']:.2f}x" in line
    assert "== pretrain_tiny_s32_b4_torch: exit 0" in table
