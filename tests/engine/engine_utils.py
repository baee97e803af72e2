"""Launching multi-process CPU jobs through the deepspeed launcher, as users do."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).parent / "driver.py"
BIN = Path(sys.executable).parent
# DeepSpeed's JIT-built CPU ops (shared-memory comm, CPU Adam) are cached here once per CI run.
ENV = dict(os.environ, DS_ACCELERATOR="cpu", TORCH_EXTENSIONS_DIR=str(ROOT / ".torch_extensions"),
           OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], processes: int = 2, script: Path = DRIVER, timeout: int = 300,
           launcher_args: list[str] = ()) -> subprocess.CompletedProcess:
    """`deepspeed --num_gpus N --master_port P script args` (on CPU, --num_gpus counts processes)."""
    cmd = [str(BIN / "deepspeed"), "--num_gpus", str(processes), "--master_port", str(free_port()),
           *launcher_args, str(script), *args]
    return subprocess.run(cmd, env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
