"""Launching multi-process CPU jobs through the deepspeed launcher, as users do."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).parent / "driver.py"
BIN = Path(sys.executable).parent
# DeepSpeed's JIT-built CPU ops (shared-memory comm, CPU Adam) are cached here once per CI run; the
# session fixture `deepspeed_ops` (tests/conftest.py) builds them before the first launch.
# The venv's bin comes first on PATH: the launcher starts `python`, and DeepSpeed's JIT build runs the
# `ninja` that pip installed beside it.
ENV = dict(os.environ, DS_ACCELERATOR="cpu", TORCH_EXTENSIONS_DIR=str(ROOT / ".torch_extensions"),
           OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], processes: int = 2, script: Path = DRIVER, timeout: int = 300,
           launcher_args: list[str] = ()) -> subprocess.CompletedProcess:
    """`deepspeed --num_gpus N --master_port P script args` (on CPU, --num_gpus counts processes)."""
    cmd = [str(BIN / "deepspeed"), "--num_gpus", str(processes), "--master_port", str(free_port()),
           *launcher_args, str(script), *args]
    return run_job(cmd, timeout=timeout)


def start_job(cmd: list[str], env: dict | None = None) -> subprocess.Popen:
    """Start a command in a process group of its own, so that `stop_job` reaches the launcher's ranks."""
    return subprocess.Popen(cmd, env=env or ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def stop_job(job: subprocess.Popen) -> None:
    """Kill whatever is left of a job: the launcher and every rank it started."""
    try:
        os.killpg(job.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_job(cmd: list[str], timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a job to its end; past `timeout` seconds (or if the test itself is interrupted) the whole
    process group is killed, so no rank outlives its test, and the test fails with the output so far."""
    job = start_job(cmd, env)
    try:
        out, _ = job.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_job(job)
        out, _ = job.communicate()
        pytest.fail(f"{' '.join(cmd)} ran past {timeout} s; its last output:\n{out[-3000:]}")
    finally:
        stop_job(job)
    return subprocess.CompletedProcess(cmd, job.returncode, out)
